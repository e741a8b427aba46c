// Entry of a worker_thread whose module is TypeScript: worker_threads do not run the parent's
// `--import tsx` (Node 20), so register tsx's loader here, then load the real module.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
