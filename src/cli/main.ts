/**
 * `sigil` — one binary for the issuer (`server`), its administration (`ctl`) and the machine
 * side (`agent`). Errors print one line `error[CODE]: message` on stderr (a JSON line with
 * `--format json`; never a stack trace, SIGIL_DEBUG=1 adds it) and exit 1 (refused), 2 (bad
 * input/config, a mistyped command line too) or 75 (try again later).
 */
const VERSION = '0.1.0';

// `sigil server start`: SIGHUP must not end the process before the issuer is up (./reload-signal.ts).
if (process.argv[2] === 'server' && process.argv[3] === 'start')
  (await import('./reload-signal.js')).catchReloadSignal();

// `sigil --version` answers before the command tree exists: building it loads commander and
// every command's module, which made the version cost as much as a status (issue #19).
if (process.argv.length === 3 && (process.argv[2] === '--version' || process.argv[2] === '-V')) {
  process.stdout.write(`${VERSION}\n`);
  process.exit(0);
}

// `sigil … | head`: a closed stdout is not an error worth a stack trace (./one-shot.ts).
const { quietOnClosedStdout, runFastAgentCommand } = await import('./one-shot.js');
quietOnClosedStdout();

// `sigil agent run|status` with plain options (the unit, cron, scripts) skip commander: ./one-shot.ts.
const fast = process.argv[2] === 'agent' && (await runFastAgentCommand(process.argv.slice(2)));
if (!fast) await commanderMain();

/** Every other command line: the command tree, registered only as far as this command needs it. */
async function commanderMain(): Promise<void> {
  const [{ Command, CommanderError }, { registerAgent }, { EXIT, reportError }, { reportUsageErrorsOurWay }] =
    await Promise.all([import('commander'), import('./agent.js'), import('./output.js'), import('./usage-errors.js')]);

  const program = new Command('sigil')
    .description('Sigil: machine identity without a human in the loop')
    .version(VERSION)
    .exitOverride();

  async function run(fn: () => Promise<void> | void): Promise<void> {
    try {
      await fn();
    } catch (err) {
      process.exitCode = reportError(err);
    }
  }

  // The issuer's commands are not registered for `sigil agent …` either: an agent never runs them.
  if (process.argv[2] !== 'agent') (await import('./server.js')).registerServer(program, run);
  // `sigil agent …` must start fast (an agent restarted offline serves its cached identity within
  // a few hundred ms), so it does not load the admin tree (stores, policy, schemas) it never uses.
  if (process.argv[2] !== 'agent') (await import('./ctl.js')).registerCtl(program, run);
  if (process.argv[2] !== 'agent') (await import('./factory.js')).registerFactory(program, run);
  if (process.argv[2] !== 'agent') (await import('./doctor.js')).registerDoctor(program, run);
  registerAgent(program, run);
  (await import('./configure.js')).registerConfigure(program, run);
  if (process.argv[2] !== 'agent') (await import('./completion.js')).registerCompletion(program, run);

  reportUsageErrorsOurWay(program);
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are "errors" to commander; they, and usage errors, already printed.
      process.exitCode = err.exitCode === 0 ? 0 : EXIT.usage;
    } else {
      process.exitCode = reportError(err);
    }
  }
}
