/**
 * Setup file (vitest.config.ts setupFiles): each test worker records which test file it runs, so
 * the hang guard (hang-guard.ts) can name the process to inspect and stop when that file hangs,
 * and the test it was in.
 *
 * Why a file and not the reporter API: the reporter runs in vitest's main process and is told
 * about test modules, never about the fork that runs them. One mark per worker pid, rewritten
 * when a fork takes its next file, removed when it exits. Marks are written only while the
 * directory exists, which the hang guard creates at the start of a run.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, expect } from 'vitest';
import { WORKER_MARK_DIR } from './hang-guard-setup.js';

const file = expect.getState().testPath;
if (file && existsSync(WORKER_MARK_DIR)) {
  const mark = path.join(WORKER_MARK_DIR, String(process.pid));
  writeFileSync(mark, file);
  // The second line names the test last started: a worker whose loop is blocked cannot send the
  // reporter the test-started event, so this is the only place the hang guard learns it from.
  beforeEach((ctx) => writeFileSync(mark, `${file}\n${ctx.task.fullName}`));
  process.once('exit', () => rmSync(mark, { force: true }));
}
