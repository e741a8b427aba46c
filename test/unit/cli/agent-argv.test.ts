/**
 * `sigil agent run|status` without commander (cli/agent-argv.ts, issue #19): a plain valid
 * command line is parsed by node:util's parseArgs, anything else is left to commander — so help,
 * usage errors and their wording do not change. The option lists must stay those registerAgent
 * declares: the last case compares them with commander's.
 */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { FAST_AGENT_OPTIONS, fastAgentCommand } from '../../../src/cli/agent-argv.js';
import { registerAgent } from '../../../src/cli/agent.js';

describe('fastAgentCommand', () => {
  it('agent run: --config, --once, --format, in any order and with =', () => {
    expect(fastAgentCommand(['agent', 'run', '--config', 'a.yaml'])).toEqual({
      command: 'run',
      options: { config: 'a.yaml' },
    });
    expect(fastAgentCommand(['agent', 'run', '--once', '--format=json', '--config=/etc/sigil/agent.yaml'])).toEqual({
      command: 'run',
      options: { config: '/etc/sigil/agent.yaml', once: true, format: 'json' },
    });
  });

  it('agent status: --config or --data-dir, --format', () => {
    expect(fastAgentCommand(['agent', 'status', '--data-dir', '/var/lib/x', '--format', 'table'])).toEqual({
      command: 'status',
      options: { dataDir: '/var/lib/x', format: 'table' },
    });
    expect(fastAgentCommand(['agent', 'status'])).toEqual({ command: 'status', options: {} });
  });

  it('anything else goes to commander (help, errors, other commands)', () => {
    for (const args of [
      ['agent', 'run'], // required --config missing: commander's error
      ['agent', 'run', '--config', 'a.yaml', '--bogus'],
      ['agent', 'status', '--bogus'],
      ['agent', 'status', '--help'],
      ['agent', 'status', '-h'],
      ['agent', 'run', '--config', 'a.yaml', 'extra'],
      ['agent', 'run', '--config'], // no value
      ['agent', 'status', '--format', '--config', 'a.yaml'], // ambiguous: commander decides
      ['agent', 'status', '--once'],
      ['agent', 'renew', '--config', 'a.yaml'],
      ['agent', 'workloads'],
      ['agent'],
      ['server', 'start'],
      [],
    ])
      expect(fastAgentCommand(args), args.join(' ')).toBeUndefined();
  });

  it('takes exactly the options registerAgent gives commander for run and status', () => {
    const program = new Command('sigil');
    registerAgent(program, async () => undefined);
    const agent = program.commands.find((c) => c.name() === 'agent')!;
    for (const sub of ['run', 'status'] as const) {
      const cmd = agent.commands.find((c) => c.name() === sub)!;
      const commanderOptions = cmd.options.map((o) => o.long!.replace(/^--/, '')).sort();
      expect(Object.keys(FAST_AGENT_OPTIONS[sub]).sort(), sub).toEqual(commanderOptions);
      // A value-taking option in one is value-taking in the other.
      for (const o of cmd.options)
        expect(
          FAST_AGENT_OPTIONS[sub][o.long!.slice(2) as keyof (typeof FAST_AGENT_OPTIONS)[typeof sub]],
          o.long,
        ).toEqual({
          type: o.required ? 'string' : 'boolean',
        });
    }
  });
});
