/**
 * What a vitest config needs for the hang guard (hang-guard.ts): the setup file that marks each
 * worker with its test file. Paths are relative to the directory vitest runs in, which its workers
 * share.
 *
 * No JavaScript stack: node's --report-on-signal answers from a JavaScript signal listener, which
 * a blocked event loop never runs (tried). The process tree's states say where a worker waits.
 */
import path from 'node:path';

/** Where test workers leave their pid marks (worker-mark.ts). */
export const WORKER_MARK_DIR = path.resolve('.tmp/vitest-workers');

export const hangGuardTestOptions = {
  setupFiles: [path.join(import.meta.dirname, 'worker-mark.ts')],
};
