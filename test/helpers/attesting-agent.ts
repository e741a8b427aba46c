/**
 * A `sigil agent run` daemon for the interval-attestation e2e tests: JSON logs on stderr kept for
 * assertions, the interval shortened through SIGIL_TEST_ATTEST_EVERY_MS (agent/test-hooks.ts),
 * stopped with SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { SIGIL } from './cli.js';

export interface AttestingAgent {
  proc: ChildProcess;
  log: () => string;
  stop: () => Promise<void>;
}

export function startAttestingAgent(config: string, attestEveryMs: number): AttestingAgent {
  const proc = spawn(process.execPath, [SIGIL, 'agent', 'run', '--config', config], {
    env: { ...process.env, SIGIL_LOG_FORMAT: 'json', SIGIL_TEST_ATTEST_EVERY_MS: String(attestEveryMs) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  return {
    proc,
    log: () => log,
    stop: async () => {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}
