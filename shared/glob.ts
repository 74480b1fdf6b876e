// Scope patterns for tokens and branches: `*` stays within one path segment,
// `**` crosses `/`, `?` is one character; everything else is literal.

/** Translates a glob to the source of an anchored regular expression. */
export function globToRegexSource(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        out += '.*';
        i++;
      } else {
        out += '[^/]*';
      }
    } else if (c === '?') {
      out += '[^/]';
    } else {
      out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return `^${out}$`;
}

/** One regular expression that matches when any of the globs matches. */
export function globsToRegex(globs: readonly string[]): RegExp {
  return new RegExp(globs.map(globToRegexSource).map((s) => `(?:${s})`).join('|'));
}
