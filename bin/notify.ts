// `image-updater notify`: the CI side. Sends one desired tag to the server, prints
// what it accepted, and with --wait follows the target until it is synced or failed.
// Exit codes: 0 done, 1 refused / failed / timed out / unreachable, 2 usage.
import { parseArgs } from 'node:util';
import { parseDuration } from '../shared/config.ts';

export const NOTIFY_USAGE = `usage: image-updater notify --server URL --image NAME --tag TAG --keyword KEYWORD
                           [--repository NAME] [--branch NAME] [--digest sha256:...]
                           [--wait [--timeout 10m]]

Sends "image NAME should now run TAG" to the image-updater server. The token comes
from the IMAGE_UPDATER_TOKEN environment variable; --server defaults to
IMAGE_UPDATER_SERVER.

  --wait          follow the update until it is synced (prints the commit, or the pull
                  request) or failed (prints the code and the reason, exits 1)
  --timeout DUR   how long --wait waits (default 10m); then exits 1
`;

export const NOTIFY_OPTIONS = {
  server: { type: 'string' },
  image: { type: 'string' },
  tag: { type: 'string' },
  keyword: { type: 'string' },
  repository: { type: 'string' },
  branch: { type: 'string' },
  digest: { type: 'string' },
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface Output {
  out: (text: string) => void;
  err: (text: string) => void;
}

interface TargetView {
  id: number;
  repository: string;
  branch: string;
  image: string;
  keyword: string;
  status: string;
  desired: { tag: string; digest: string | null };
  applied: { tag: string; commit: string | null } | null;
  proposal?: { url: string } | null;
  lastError: { code: string; message: string } | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const CONNECT_ATTEMPTS = 4;

/** fetch, retrying connection errors and 502/503/504 (a server restarting) a few times. */
async function call(url: string, init: RequestInit, io: Output): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
      if (![502, 503, 504].includes(res.status) || attempt >= CONNECT_ATTEMPTS) return res;
      io.err(`image-updater: the server answered ${res.status}; trying again\n`);
    } catch (err) {
      const reason = ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message;
      if (attempt >= CONNECT_ATTEMPTS) throw new Error(`cannot reach ${new URL(url).origin}: ${reason}`);
      io.err(`image-updater: cannot reach ${new URL(url).origin} (${reason}); trying again\n`);
    }
    await sleep(500 * 2 ** (attempt - 1));
  }
}

/** The server's error, as `STATUS CODE: message (field f)`. */
async function refusal(res: Response): Promise<string> {
  const text = await res.text();
  try {
    const { error } = JSON.parse(text) as { error: { code: string; message: string; field?: string } };
    return `${res.status} ${error.code}: ${error.message}${error.field ? ` (field ${error.field})` : ''}`;
  } catch {
    return `${res.status} ${text.slice(0, 200)}`;
  }
}

export async function notify(argv: string[], env: NodeJS.ProcessEnv, io: Output): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: NOTIFY_OPTIONS,
    }));
  } catch (err) {
    io.err(`image-updater notify: ${(err as Error).message}\n\n${NOTIFY_USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(NOTIFY_USAGE);
    return 0;
  }
  const server = values.server ?? env.IMAGE_UPDATER_SERVER;
  const problems: string[] = [];
  if (!server) problems.push('--server (or IMAGE_UPDATER_SERVER) is required');
  else if (!/^https?:\/\/[^/\s]+/.test(server)) problems.push('--server must be an http:// or https:// URL');
  for (const name of ['image', 'tag', 'keyword'] as const) if (!values[name]) problems.push(`--${name} is required`);
  const token = env.IMAGE_UPDATER_TOKEN;
  if (!token) problems.push('IMAGE_UPDATER_TOKEN is not set: give CI the token `image-updater token` printed');
  const timeoutMs = parseDuration(values.timeout ?? '10m');
  if (timeoutMs === undefined) problems.push('--timeout must be a duration such as "90s" or "10m"');
  if (problems.length > 0) {
    io.err(`image-updater notify: ${problems.join('; ')}\n\n${NOTIFY_USAGE}`);
    return 2;
  }

  const base = server!.replace(/\/+$/, '');
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  const body = {
    image: values.image,
    tag: values.tag,
    keyword: values.keyword,
    ...(values.repository ? { repository: values.repository } : {}),
    ...(values.branch ? { branch: values.branch } : {}),
    ...(values.digest ? { digest: values.digest } : {}),
  };
  let target: TargetView;
  try {
    const res = await call(`${base}/v1/images`, { method: 'POST', headers, body: JSON.stringify(body) }, io);
    if (res.status !== 202) {
      io.err(`image-updater notify: the server refused the update: ${await refusal(res)}\n`);
      return 1;
    }
    const accepted = (await res.json()) as { change: string; target: TargetView };
    target = accepted.target;
    io.out(`accepted: ${target.image}:${target.desired.tag} (${target.keyword}) for ${target.repository}@${target.branch}: target ${target.id}, ${accepted.change}\n`);
  } catch (err) {
    io.err(`image-updater notify: ${(err as Error).message}\n`);
    return 1;
  }
  if (!values.wait) return 0;

  const tag = target.desired.tag;
  const deadline = Date.now() + timeoutMs!;
  let last = '';
  for (;;) {
    if (target.desired.tag !== tag) {
      io.err(`image-updater notify: superseded: target ${target.id} now wants ${target.desired.tag}, not ${tag}\n`);
      return 1;
    }
    if (target.status === 'synced') {
      const proposal = target.proposal?.url ? ` (pull request ${target.proposal.url})` : '';
      io.out(`synced: ${target.image}:${tag} in commit ${target.applied?.commit ?? '(unknown)'}${proposal}\n`);
      return 0;
    }
    if (target.status === 'failed') {
      io.err(`image-updater notify: failed: ${target.lastError?.code ?? 'UNKNOWN'}: ${target.lastError?.message ?? 'no reason recorded'}\n`);
      return 1;
    }
    const now = `${target.status}${target.proposal?.url ? ` ${target.proposal.url}` : ''}${target.lastError ? ` (${target.lastError.code}: ${target.lastError.message})` : ''}`;
    if (now !== last) io.out(`${target.status === 'proposed' ? 'proposed' : 'waiting'}: ${now}\n`);
    last = now;
    if (Date.now() >= deadline) {
      io.err(`image-updater notify: timed out after ${values.timeout ?? '10m'}: target ${target.id} is still ${now}\n`);
      return 1;
    }
    await sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
    try {
      const res = await call(`${base}/v1/images/${target.id}`, { headers }, io);
      if (res.status !== 200) {
        io.err(`image-updater notify: cannot follow target ${target.id}: ${await refusal(res)}\n`);
        return 1;
      }
      target = (await res.json()) as TargetView;
    } catch (err) {
      io.err(`image-updater notify: ${(err as Error).message}\n`);
      return 1;
    }
  }
}
