/**
 * `sigil agent run|status` with plain options (the unit, cron, scripts): parsed without
 * commander (./agent-argv.ts) and run here. main.ts calls it first; the production bundle also
 * builds this module alone as a CommonJS script that its entry compiles with a V8 code cache
 * (./code-cache.ts), so a cron'd `run --once` or a `status` skips most of V8's compile work
 * (issue #19, docs/performance.md "Agent footprint").
 */
import { fastAgentCommand } from './agent-argv.js';

/** `sigil … | head`: a closed stdout is not an error worth a stack trace. Returns the uninstaller. */
export function quietOnClosedStdout(): () => void {
  const onError = (e: NodeJS.ErrnoException): void => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  };
  process.stdout.on('error', onError);
  return () => process.stdout.off('error', onError);
}

/**
 * A one-shot command is done when its action returns (outputs, SQLite and the lock are written
 * synchronously; the agent is closed). Left to drain, the event loop would only give V8 time to
 * finish a garbage collection begun while loading modules: ~10 ms of `run --once`'s CPU, ~5 ms
 * of `status`'s. Exit once what was written to stdout and stderr is flushed.
 */
function exitWhenFlushed(): void {
  process.stderr.write('', () => process.stdout.write('', () => process.exit()));
}

/**
 * Runs `args` (process.argv after the script) if it is a plain `agent run|status` line; false:
 * it is not (help, a usage error, another command), let commander have it. `oneShotDone` is
 * called when a one-shot command (status, run --once) has finished (the code cache's training
 * run replaces it so that the process lives on).
 */
export async function runFastAgentCommand(
  args: readonly string[],
  oneShotDone: () => void = exitWhenFlushed,
): Promise<boolean> {
  const fast = fastAgentCommand(args);
  if (!fast) return false;
  const [agent, { reportError }] = await Promise.all([import('./agent.js'), import('./output.js')]);
  try {
    await (fast.command === 'run' ? agent.agentRunCommand(fast.options) : agent.agentStatusCommand(fast.options));
  } catch (err) {
    process.exitCode = reportError(err);
  }
  if (fast.command === 'status' || fast.options.once) oneShotDone();
  return true;
}
