/**
 * `sigil server rotate-key` (server/rotate-key.ts; docs/runbook.md "Rotate a key"): the command
 * line and what it prints — the step taken, the files to copy and to remove on a shared store,
 * and the next step.
 */
import { relative } from 'node:path';
import type { Command } from 'commander';
import { SigilError } from '../errors.js';
import { parseFormat, printJson, printKv } from './output.js';

const STORE_HELP = 'the store (postgres://…); default $SIGIL_STORE, else DATA_DIR/issuer.db';

export function registerRotateKey(server: Command, run: (fn: () => Promise<void> | void) => Promise<void>): void {
  server
    .command('rotate-key')
    .description(
      'replace the JWT-SVID key, an SSH CA or the admin credential in place: --stage, wait 25h, then activate (docs/runbook.md "Rotate a key")',
    )
    .requiredOption('--data-dir <dir>', 'issuer data directory')
    .requiredOption('--key <key>', 'jwt, ssh-user, ssh-host or admin-token')
    .option('--stage', 'make the next key and publish it beside the signing key; it signs after the activation')
    .option('--cancel', 'drop the staged key')
    .option(
      '--overlap <duration>',
      'at activation: how long the old public key stays published (default 25h: credentials it signed live ≤ 24h); 0 when it is compromised',
    )
    .option('--store <url>', STORE_HELP)
    .option('--format <fmt>', 'table or json')
    .action(
      (o: {
        dataDir: string;
        key: string;
        stage?: boolean;
        cancel?: boolean;
        overlap?: string;
        store?: string;
        format?: string;
      }) =>
        run(async () => {
          const fmt = parseFormat(o.format);
          const { rotateKey } = await import('../server/rotate-key.js');
          const { parseDuration } = await import('../util/duration.js');
          if (o.stage && o.cancel) throw new SigilError('bad_request', 'give --stage or --cancel, not both');
          const overlapS =
            o.overlap === undefined
              ? undefined
              : /^0+[smhd]?$/.test(o.overlap.trim())
                ? 0
                : parseDuration(o.overlap, 'config_invalid');
          const store = o.store ?? process.env['SIGIL_STORE'];
          const r = await rotateKey({
            dataDir: o.dataDir,
            key: o.key,
            step: o.stage ? 'stage' : o.cancel ? 'cancel' : 'activate',
            ...(overlapS !== undefined ? { overlapS } : {}),
            ...(store ? { store } : {}),
          });
          if (fmt === 'json')
            return printJson({
              key: r.key,
              step: r.step,
              previous: r.previous,
              current: r.current,
              trusted_until: r.trustedUntil,
              staged_for_s: r.stagedForS,
              withdrawn: r.dropped,
              warning: r.warning,
              files: r.files,
              removed: r.removed,
              reload_within_s: r.reloadWithinS,
              shared_store: r.sharedStore,
            });
          const others = "every other issuer's data directory on this store";
          // Relative to each data directory, the list first: an issuer that reads a half-copied
          // step waits for the key file after the list, never the other way round (server/key-reload.ts).
          const rel = (f: string): string => relative(o.dataDir, f);
          const ordered = [...r.files].sort((a, b) => Number(b.endsWith('.json')) - Number(a.endsWith('.json')));
          const copy = r.sharedStore
            ? `copy ${ordered.map(rel).join(', then ')} into ${others} (the same place in each, the same modes)${r.removed.length > 0 ? ` and remove ${r.removed.map(rel).join(', ')} there` : ''}; `
            : '';
          const running = `running issuers${r.sharedStore ? ' (each one, once its copy is in place)' : ''} pick it up within ${r.reloadWithinS ?? 0} s, or at once with: systemctl reload sigil-server (SIGHUP)`;
          const exportType = r.key === 'jwt' ? 'jwks' : r.key;
          const lines: Record<string, string> = {};
          const fileLines = (): void => {
            lines['files'] = r.files.join(', ');
            if (r.removed.length > 0) lines['removed'] = r.removed.join(', ');
          };
          if (r.key === 'admin-token') {
            lines['rotated'] = 'admin-token';
            fileLines();
            lines['next'] = r.sharedStore
              ? `the old admin token is refused now by every issuer on the store; copy ${r.files[0]} to ${others} for sigil ctl there`
              : `the old admin token is refused now; use the new ${r.files[0]} with sigil ctl --server`;
          } else if (r.step === 'stage') {
            lines['staged'] = `${r.key} ${r.current}`;
            fileLines();
            lines['next'] =
              `${copy}${running} and publish it; 25h later, activate it: sigil server rotate-key --data-dir ${o.dataDir} --key ${r.key}`;
          } else if (r.step === 'cancel') {
            lines['cancelled'] = `${r.key} ${r.current}`;
            fileLines();
            lines['next'] = `${copy}${running} and stop publishing it`;
          } else {
            const where =
              r.key === 'jwt'
                ? '/v1/jwks, the SPIFFE bundle, agent bundles, ca export --type jwks'
                : `the SSH trust lines of credential answers, ca export --type ${r.key}`;
            lines['rotated'] = r.key;
            lines['previous'] = r.previous ?? '-';
            lines['current'] = r.current ?? '-';
            lines['previous key'] =
              r.previous === r.current
                ? 'an interrupted activation was finished'
                : r.trustedUntil
                  ? `still published (${where}) until ${r.trustedUntil}`
                  : 'no longer published (overlap 0); an issuer still holding it stops signing with it when it reads the store’s record or the new list, and refuses to start with it';
            if (r.dropped.length > 0) lines['withdrawn'] = r.dropped.join(', ');
            if (r.warning) lines['warning'] = r.warning;
            fileLines();
            lines['next'] =
              `${copy}${running} and sign with the new key. Consumers configured by hand: sigil ctl --data-dir ${o.dataDir} ca export --type ${exportType}`;
          }
          printKv(lines);
        }),
    );
}
