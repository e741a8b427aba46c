/**
 * The production bundle's entry (scripts/bundle.mjs; `sigil` of the package). The one-shot agent
 * commands — `agent run --once` (cron), `agent status` — run from `agent-one-shot.cjs`, the same
 * code as ./one-shot.ts built as one CommonJS script, compiled with its V8 code cache
 * (./code-cache.ts says why a cache is trusted only there and only so); everything else (the
 * daemon, the issuer, help and usage errors) from the ES module chunks through ./main.ts, as
 * from dist/. Without the script beside this file (dist/ itself), everything goes to main.ts.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runCommonJsWithCache } from './code-cache.js';

type OneShot = typeof import('./one-shot.js');

/** Cheap pre-check on argv; one-shot.ts decides for real (plain options only) and may still decline. */
const [, , top, sub, ...rest] = process.argv;
const oneShotLine = top === 'agent' && (sub === 'status' || (sub === 'run' && rest.includes('--once')));
const script = fileURLToPath(new URL('./agent-one-shot.cjs', import.meta.url));

/** Runs the line from the code-cached script; false: it was not a plain one-shot line after all. */
async function runOneShot(): Promise<boolean> {
  const oneShot = runCommonJsWithCache(script).exports as unknown as OneShot;
  const loud = oneShot.quietOnClosedStdout();
  const handled = await oneShot.runFastAgentCommand(process.argv.slice(2));
  if (!handled) loud(); // main.ts installs its own
  return handled;
}

if (!(oneShotLine && existsSync(script) && (await runOneShot()))) await import('./main.js');
