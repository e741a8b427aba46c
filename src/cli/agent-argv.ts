/**
 * The command lines a gateway runs all day — `sigil agent run …` (the unit, a cron'd `--once`)
 * and `sigil agent status …` — parsed with node:util's parseArgs instead of building commander's
 * command tree: commander costs ~6 ms of CPU per start and ~3 MB of the daemon's memory, a tenth
 * of the `agent status` budget (issue #19, docs/performance.md "Agent footprint").
 *
 * Only a plain, valid invocation takes this path: the options below and nothing else, no
 * positional, no `--help`, the required --config present, nothing parseArgs calls ambiguous
 * (`--format --once`). Anything else returns undefined and main.ts hands the line to commander,
 * so help, usage errors and their wording stay commander's (cli/usage-errors.ts). The options
 * are those registerAgent declares (./agent.ts); test/unit/cli/agent-argv.test.ts holds the two
 * lists together.
 */
import { parseArgs } from 'node:util';
import type { AgentRunOptions, AgentStatusOptions } from './agent.js';

export type FastAgentCommand =
  { command: 'run'; options: AgentRunOptions } | { command: 'status'; options: AgentStatusOptions };

export const FAST_AGENT_OPTIONS = {
  run: { config: { type: 'string' }, once: { type: 'boolean' }, format: { type: 'string' } },
  status: { config: { type: 'string' }, 'data-dir': { type: 'string' }, format: { type: 'string' } },
} as const;

/** `args`: process.argv after the script (`agent status --config …`); undefined: let commander parse it. */
export function fastAgentCommand(args: readonly string[]): FastAgentCommand | undefined {
  const [top, sub, ...rest] = args;
  if (top !== 'agent' || (sub !== 'run' && sub !== 'status')) return undefined;
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ args: [...rest], options: FAST_AGENT_OPTIONS[sub], strict: true, allowPositionals: false })
      .values as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const str = (k: string): string | undefined => (typeof values[k] === 'string' ? values[k] : undefined);
  if (sub === 'run') {
    const config = str('config');
    if (config === undefined) return undefined; // commander's "required option" error
    return {
      command: 'run',
      options: {
        config,
        ...(values.once === true ? { once: true } : {}),
        ...(str('format') !== undefined ? { format: str('format') } : {}),
      },
    };
  }
  return {
    command: 'status',
    options: {
      ...(str('config') !== undefined ? { config: str('config') } : {}),
      ...(str('data-dir') !== undefined ? { dataDir: str('data-dir') } : {}),
      ...(str('format') !== undefined ? { format: str('format') } : {}),
    },
  };
}
