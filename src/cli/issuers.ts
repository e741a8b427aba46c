/**
 * `sigil server add-issuer | retire-issuer | rotate-intermediate | issuers` (issue #15;
 * docs/issuers.md): one root, one intermediate per issuer, registered in the store.
 */
import type { Command } from 'commander';
import { SigilError } from '../errors.js';
import { parseFormat, printJson, printKv, printTable } from './output.js';

const STORE_HELP = 'the shared store (postgres://…); default $SIGIL_STORE';

export function registerIssuerCommands(server: Command, run: (fn: () => Promise<void> | void) => Promise<void>): void {
  server
    .command('add-issuer')
    .description('make a new issuer data directory with its own intermediate CA, signed by the root, and register it')
    .requiredOption(
      '--data-dir <dir>',
      'a data directory holding the root key (ca/root.key): the first issuer, or the offline root',
    )
    .requiredOption('--name <name>', 'the new issuer (a-z 0-9 -, at most 32)')
    .requiredOption('--out <dir>', 'the new data directory (must not exist or be empty)')
    .option('--store <url>', STORE_HELP)
    .option('--format <fmt>', 'table or json')
    .action((o: { dataDir: string; name: string; out: string; store?: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        const { addIssuer } = await import('../server/issuers/add-issuer.js');
        const store = o.store ?? process.env['SIGIL_STORE'];
        const r = await addIssuer({ rootDir: o.dataDir, name: o.name, outDir: o.out, ...(store ? { store } : {}) });
        if (fmt === 'json') return printJson(r);
        printKv({
          issuer: r.name,
          'data dir': r.dataDir,
          'intermediate serial': r.serial,
          'intermediate not after': r.notAfter,
          ...(r.registeredFirst ? { 'also registered': `${o.dataDir}'s intermediate as "${r.registeredFirst}"` } : {}),
          next: `copy ${r.dataDir} to the new issuer host (it holds the intermediate key and the shared secrets), then: sigil server start --data-dir <it> --store <the same URL> --public-url <the URL every issuer names, e.g. the load balancer's>`,
        });
      }),
    );

  server
    .command('retire-issuer')
    .description(
      'retire an issuer (it stops serving; its leaves renew elsewhere), or --revoke it (its leaves are refused)',
    )
    .requiredOption(
      '--data-dir <dir>',
      'any issuer data directory on the store (with ca/root.key, --revoke also signs the root CRL)',
    )
    .requiredOption('--name <name>', 'the issuer to retire')
    .option('--revoke', 'the intermediate is compromised: refuse its leaves at renewal and list it in the root CRL')
    .option(
      '--root-key <file>',
      'with --revoke: the root key, where it is kept offline (default: DATA_DIR/ca/root.key)',
    )
    .option('--reason <text>', 'recorded in the registry and the audit log')
    .option('--store <url>', STORE_HELP)
    .option('--format <fmt>', 'table or json')
    .action(
      (o: {
        dataDir: string;
        name: string;
        revoke?: boolean;
        rootKey?: string;
        reason?: string;
        store?: string;
        format?: string;
      }) =>
        run(async () => {
          const fmt = parseFormat(o.format);
          const { retireIssuer } = await import('../server/issuers/retire.js');
          const store = o.store ?? process.env['SIGIL_STORE'];
          const r = await retireIssuer({
            dataDir: o.dataDir,
            name: o.name,
            revoke: o.revoke === true,
            ...(o.rootKey !== undefined ? { rootKey: o.rootKey } : {}),
            ...(o.reason !== undefined ? { reason: o.reason } : {}),
            ...(store ? { store } : {}),
          });
          const rootCrl = r.rootCrl
            ? {
                file: r.rootCrlFile,
                crl_number: r.rootCrl.crlNumber.toString(),
                listed: r.rootCrl.listed,
                next_update: new Date(r.rootCrl.nextUpdate).toISOString(),
              }
            : undefined;
          if (fmt === 'json')
            return printJson({
              issuer: r.issuer.name,
              status: r.issuer.status,
              changed: r.changed,
              root_crl: rootCrl ?? null,
            });
          printKv({
            issuer: r.issuer.name,
            status: r.changed ? r.issuer.status : `${r.issuer.status} (unchanged)`,
            ...(rootCrl
              ? {
                  'root CRL': `${rootCrl.file} (cRLNumber ${rootCrl.crl_number}, lists ${rootCrl.listed.map((l) => l.name).join(', ')})`,
                }
              : o.revoke
                ? { 'root CRL': `not signed here (no ca/root.key): run the same command where the root key is` }
                : {}),
          });
        }),
    );

  server
    .command('rotate-intermediate')
    .description(
      "give this issuer a new intermediate CA signed by the root; the old one is retired (its leaves renew onto the new one) or, after a compromise, --revoke-old'd",
    )
    .requiredOption('--data-dir <dir>', 'the issuer data directory')
    .option('--root-key <file>', 'the root key, where it is kept offline (default: DATA_DIR/ca/root.key)')
    .option('--name <name>', 'registry name of the new intermediate (default: the old name with -2, -3, …)')
    .option(
      '--revoke-old',
      'the old intermediate key is compromised: refuse its leaves at renewal (agents join again) and list it in the root CRL',
    )
    .option('--reason <text>', 'recorded in the registry and the audit log')
    .option(
      '--validity-days <n>',
      'lifetime of the new intermediate (2–1825, default 1825, never beyond the root): shorter bounds what a stolen intermediate key is worth to relying parties that do not check CRLs',
    )
    .option('--store <url>', STORE_HELP)
    .option('--format <fmt>', 'table or json')
    .action(
      (o: {
        dataDir: string;
        rootKey?: string;
        name?: string;
        validityDays?: string;
        revokeOld?: boolean;
        reason?: string;
        store?: string;
        format?: string;
      }) =>
        run(async () => {
          const fmt = parseFormat(o.format);
          const { rotateIntermediate } = await import('../server/issuers/rotate-intermediate.js');
          const store = o.store ?? process.env['SIGIL_STORE'];
          const r = await rotateIntermediate({
            dataDir: o.dataDir,
            revokeOld: o.revokeOld === true,
            ...(o.rootKey !== undefined ? { rootKey: o.rootKey } : {}),
            ...(o.name !== undefined ? { name: o.name } : {}),
            ...(o.reason !== undefined ? { reason: o.reason } : {}),
            ...(o.validityDays !== undefined ? { validityDays: wholeDays(o.validityDays) } : {}),
            ...(store ? { store } : {}),
          });
          if (fmt === 'json') return printJson(r);
          printKv({
            new: `${r.new.name} (serial ${r.new.serial}, not after ${r.new.notAfter})`,
            old: `${r.old.name} (serial ${r.old.serial}) ${r.old.status}; its certificate kept as ${r.old.keptAs}`,
            ...(r.rootCrlFile
              ? {
                  'root CRL': `${r.rootCrlFile} (lists ${(r.rootCrlListed ?? []).join(', ')}): give it to relying parties that check the whole chain (PEM: openssl crl -inform DER -in ${r.rootCrlFile} -out root-crl.pem), and copy it to every other issuer's crl/`,
                }
              : {}),
            next:
              r.old.status === 'revoked'
                ? "start the issuer (systemctl start sigil-server): a running one exits within ~5 s (75: Restart=on-failure starts it again with the new intermediate). Agents whose leaf was issued under the old intermediate learn it at their next trust check (the root CRL: within trust_check_every, default 5 min; a cron'd agent at its first pass after that) or renewal (refused issuer_revoked; sigil agent renew on a machine: now), and join again: TPM, cloud, x509 and OIDC agents by themselves in that pass, token agents once given a new token (they say reattest_required)"
                : `start the issuer (systemctl start sigil-server): a running one exits within ~5 s (75: Restart=on-failure starts it again with the new intermediate). Agents move to the new intermediate at their next renewal; to revoke the old one afterwards: sigil server retire-issuer --data-dir ${o.dataDir} --name ${r.old.name} --revoke --root-key <file> (not another rotate-intermediate --revoke-old, which would revoke the new one)`,
          });
        }),
    );

  server
    .command('issuers')
    .description('list the registered issuers and whether this issuer trusts each (signed by its root)')
    .requiredOption('--data-dir <dir>', 'an issuer data directory')
    .option('--store <url>', STORE_HELP)
    .option('--format <fmt>', 'table or json')
    .action((o: { dataDir: string; store?: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        const { listIssuers } = await import('../server/issuers/list.js');
        const store = o.store ?? process.env['SIGIL_STORE'];
        const rows = await listIssuers(o.dataDir, store);
        if (fmt === 'json') return printJson(rows);
        printTable(
          rows.map((r) => ({ ...r, own: r.own ? 'yes' : '' })),
          ['name', 'status', 'verified', 'serial', 'not_after', 'own', 'reason'],
        );
      }),
    );
}

/** `--validity-days`: digits only (Number() would take " 90", "0x5a", "9e1"); the range is rotateIntermediate's. */
function wholeDays(v: string): number {
  if (!/^[0-9]{1,5}$/.test(v))
    throw new SigilError('config_invalid', `--validity-days must be a whole number of days from 2 to 1825, got "${v}"`);
  return Number(v);
}
