// Image names, tags and digests per the OCI distribution grammar
// (github.com/distribution/reference), and the normalisation that makes
// `nginx` and `docker.io/library/nginx` the same image.

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6 = /^\[[a-fA-F0-9:]+\]$/;
const PORT = /^[0-9]{1,5}$/;
const NAME_MAX = 255;

export const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
export const DIGEST = /^sha256:[a-f0-9]{64}$/;
export const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const DOCKER_HUB = 'docker.io';

/** An image name split into registry and path, both as written and normalised. */
export interface ImageName {
  /** Registry host as written, or undefined when the name has none. */
  domain: string | undefined;
  /** Path below the registry as written (`acme/app`). */
  path: string;
  /** The canonical form: `docker.io/library/nginx` for `nginx`. */
  normalized: string;
}

/** Outcome of parsing: the value, or a sentence saying which rule was broken. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/** True when the first component of a name is a registry host rather than a path. */
function looksLikeDomain(component: string): boolean {
  return (
    component.includes('.') ||
    component.includes(':') ||
    component === 'localhost' ||
    component.toLowerCase() !== component
  );
}

function checkDomain(domain: string): string | undefined {
  const colon = domain.startsWith('[') ? domain.indexOf(':', domain.indexOf(']')) : domain.lastIndexOf(':');
  const host = colon === -1 ? domain : domain.slice(0, colon);
  const port = colon === -1 ? undefined : domain.slice(colon + 1);
  if (port !== undefined && (!PORT.test(port) || Number(port) > 65535)) {
    return `registry port "${port}" must be a number from 0 to 65535`;
  }
  if (IPV6.test(host)) return undefined;
  if (!host.split('.').every((part) => DOMAIN_COMPONENT.test(part))) {
    return `registry host "${host}" is not a valid host name (letters, digits and inner hyphens, separated by dots)`;
  }
  return undefined;
}

/**
 * Parses an image name without tag or digest (`gcr.io/acme/app`, `localhost:5000/team/app`, `nginx`).
 * The reason names the rule broken, for an error message a CI user can act on.
 */
export function parseImageName(input: string): Parsed<ImageName> {
  if (input.length === 0) return { ok: false, reason: 'must not be empty' };
  if (input.length > NAME_MAX) return { ok: false, reason: `must be at most ${NAME_MAX} characters` };
  if (/[\s\u0000-\u001f\u007f]/.test(input)) {
    return { ok: false, reason: 'must not contain white space or control characters' };
  }
  if (input.includes('@')) return { ok: false, reason: 'must not include a digest: send it in "digest"' };

  const slash = input.indexOf('/');
  const first = slash === -1 ? input : input.slice(0, slash);
  const hasDomain = slash !== -1 && looksLikeDomain(first);
  const domain = hasDomain ? first : undefined;
  const path = hasDomain ? input.slice(slash + 1) : input;

  const last = path.slice(path.lastIndexOf('/') + 1);
  if (last.includes(':')) return { ok: false, reason: 'must not include a tag: send it in "tag"' };
  if (domain !== undefined) {
    const problem = checkDomain(domain);
    if (problem) return { ok: false, reason: problem };
  }
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      return {
        ok: false,
        reason:
          component === ''
            ? 'must not have an empty path component (check for "//" or a trailing "/")'
            : `path component "${component}" must be lowercase letters and digits, joined by ".", "_", "__" or "-"`,
      };
    }
  }

  let canonicalDomain = domain ?? DOCKER_HUB;
  if (canonicalDomain === 'index.docker.io') canonicalDomain = DOCKER_HUB;
  const canonicalPath = canonicalDomain === DOCKER_HUB && !path.includes('/') ? `library/${path}` : path;
  return { ok: true, value: { domain, path, normalized: `${canonicalDomain}/${canonicalPath}` } };
}

/** Normalises an image name, or returns undefined when it is not one. */
export function normalizeImageName(input: string): string | undefined {
  const parsed = parseImageName(input);
  return parsed.ok ? parsed.value.normalized : undefined;
}

/** Why a tag is invalid, or undefined when it follows the OCI grammar. */
export function tagProblem(tag: string): string | undefined {
  if (TAG.test(tag)) return undefined;
  if (tag.length === 0) return 'must not be empty';
  if (tag.length > 128) return 'must be at most 128 characters';
  return 'must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127} (letters, digits, "_", "." and "-"; no leading "." or "-")';
}

/** Why a digest is invalid, or undefined when it is `sha256:` and 64 lowercase hex digits. */
export function digestProblem(digest: string): string | undefined {
  return DIGEST.test(digest) ? undefined : 'must be "sha256:" followed by 64 lowercase hex digits';
}

/** Why a keyword is invalid, or undefined when it can be used as a marker comment. */
export function keywordProblem(keyword: string): string | undefined {
  return KEYWORD.test(keyword)
    ? undefined
    : 'must match [A-Za-z0-9][A-Za-z0-9._-]{0,127} (a letter or digit, then letters, digits, ".", "_" or "-")';
}

/** A full reference as written on a manifest line: name, optional tag, optional digest. */
export interface Reference {
  name: ImageName;
  /** The name exactly as written (the part before `:tag` / `@digest`). */
  written: string;
  tag: string | undefined;
  digest: string | undefined;
}

/** Parses `name[:tag][@digest]`, or returns undefined when the text is not a valid reference. */
export function parseReference(text: string): Reference | undefined {
  const at = text.indexOf('@');
  const digest = at === -1 ? undefined : text.slice(at + 1);
  if (digest !== undefined && digestProblem(digest)) return undefined;
  const nameAndTag = at === -1 ? text : text.slice(0, at);
  const lastSlash = nameAndTag.lastIndexOf('/');
  const colon = nameAndTag.indexOf(':', lastSlash + 1);
  const written = colon === -1 ? nameAndTag : nameAndTag.slice(0, colon);
  const tag = colon === -1 ? undefined : nameAndTag.slice(colon + 1);
  if (tag !== undefined && tagProblem(tag)) return undefined;
  const name = parseImageName(written);
  return name.ok ? { name: name.value, written, tag, digest } : undefined;
}
