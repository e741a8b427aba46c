/**
 * `sigil doctor`: run every check for an agent (`--config agent.yaml`) or an issuer
 * (`--data-dir D`) and print one line each, `ok|warn|fail  <check>  <detail> — fix: …`, or with
 * `--format json` `{checks: [{name, status, detail, fix}], ok}`. Exit 1 when a check failed
 * (warnings alone exit 0), 2 for bad usage. The checks (src/doctor/) are imported inside the
 * action: registering the command costs `sigil agent` nothing.
 */
import type { Command } from 'commander';
import { SigilError } from '../errors.js';
import { EXIT, parseFormat, printJson } from './output.js';

interface DoctorOptions {
  config?: string;
  dataDir?: string;
  listen?: string;
  full?: boolean;
  format?: string;
}

export function registerDoctor(program: Command, run: (fn: () => Promise<void> | void) => Promise<void>): void {
  program
    .command('doctor')
    .description('check an agent (--config) or an issuer (--data-dir) and say what to fix')
    .option(
      '--config <file>',
      'agent.yaml: check the agent (config, data dir, outputs, TPM, issuer and broker, clock, identity)',
    )
    .option(
      '--data-dir <dir>',
      'issuer data directory: check the issuer (modes, CA, store, audit chain, admin credential)',
    )
    .option('--listen <host:port>', 'with --data-dir: also check that the issuer could listen there')
    .option('--full', 'with --data-dir: verify the whole audit chain and the SQLite integrity (slow on big stores)')
    .option('--format <fmt>', 'table or json')
    .action((o: DoctorOptions) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        if ((o.config === undefined) === (o.dataDir === undefined))
          throw new SigilError('bad_request', 'give --config agent.yaml (an agent) or --data-dir DIR (an issuer)');
        if (o.config !== undefined && (o.listen !== undefined || o.full))
          throw new SigilError('bad_request', '--listen and --full go with --data-dir (issuer checks)');
        const report =
          o.config !== undefined
            ? await (await import('../doctor/agent/index.js')).agentDoctor(o.config)
            : await (
                await import('../doctor/server/index.js')
              ).issuerDoctor({
                dataDir: o.dataDir!,
                ...(o.listen !== undefined ? { listen: o.listen } : {}),
                full: o.full ?? false,
              });
        if (fmt === 'json') printJson(report);
        else process.stdout.write((await import('../doctor/runner.js')).formatReport(report));
        process.exitCode = report.ok ? 0 : EXIT.failed;
      }),
    );
}
