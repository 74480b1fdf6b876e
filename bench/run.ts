// `npm run bench`: every benchmark, one after another; exits 1 when a target is missed.
import { benchServerThroughput } from './server-throughput.ts';

const results = [await benchServerThroughput()];
process.exitCode = results.every(Boolean) ? 0 : 1;
