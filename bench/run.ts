// `npm run bench`: every benchmark, one after another; exits 1 when a target is missed.
import { benchMirror } from './mirror-copy.ts';
import { benchServerThroughput } from './server-throughput.ts';
import { benchSyncLatency } from './sync-latency.ts';

// BENCH_ONLY=server, BENCH_ONLY=sync or BENCH_ONLY=mirror runs one of them.
const only = process.env.BENCH_ONLY;
const results = [];
if (!only || only === 'server') results.push(await benchServerThroughput());
if (!only || only === 'sync') results.push(await benchSyncLatency());
if (!only || only === 'mirror') results.push(await benchMirror());
process.exitCode = results.every(Boolean) ? 0 : 1;
