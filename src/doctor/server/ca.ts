/**
 * The CA material the issuer serves with: root and intermediate certificates parse, the
 * intermediate is a CA issued and signed by the root, the intermediate key is readable only by
 * its owner and belongs to the certificate, and neither certificate is expired or about to be
 * (30 days: time to give the fleet a new intermediate, see REPLACE_INTERMEDIATE). A missing root key is
 * fine — the runbook says to move it offline.
 */
import { X509Certificate, createPublicKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { toSigilError } from '../../errors.js';
import { sh } from '../file-modes.js';
import { fail, ok, warn, type Check, type CheckOutcome } from '../types.js';
import { splitFix, type IssuerDoctorContext } from './context.js';

/**
 * No command re-issues an intermediate in place (docs/runbook.md "Move the root key offline"): a
 * new intermediate is a new issuer, which needs the root key and a PostgreSQL store.
 */
const REPLACE_INTERMEDIATE =
  'give this issuer a new intermediate, with the root key brought in for the run: sigil server rotate-intermediate --data-dir DATA_DIR --root-key FILE (SQLite or PostgreSQL; agents move to it at their next renewal; docs/issuers.md)';

export const CA_EXPIRY_WARN_MS = 30 * 86_400_000;
const DAY = 86_400_000;

function readCert(file: string): X509Certificate {
  return new X509Certificate(readFileSync(file));
}

export const caCheck: Check<IssuerDoctorContext> = {
  name: 'ca',
  async run(ctx): Promise<CheckOutcome> {
    const [{ paths }, { readPrivateKeyFile }] = await Promise.all([
      import('../../server/data-dir.js'),
      import('../../server/key-file.js'),
    ]);
    const p = paths(ctx.dataDir);
    const certs: Array<[string, string]> = [
      ['root', p.rootCert],
      ['intermediate', p.intCert],
    ];
    const parsed: X509Certificate[] = [];
    for (const [what, file] of certs) {
      if (!existsSync(file))
        return fail(
          `the ${what} certificate ${file} is missing`,
          `restore ${sh(file)} from your backup (docs/runbook.md "Back up")`,
        );
      try {
        parsed.push(readCert(file));
      } catch (e) {
        return fail(
          `the ${what} certificate ${file} does not parse: ${(e as Error).message}`,
          `restore ${sh(file)} from your backup`,
        );
      }
    }
    const [root, inter] = parsed as [X509Certificate, X509Certificate];
    if (!root.ca || !root.checkIssued(root) || !root.verify(root.publicKey))
      return fail(`${p.rootCert} is not a self-signed CA certificate`, `restore ${sh(p.rootCert)} from your backup`);
    if (!inter.ca || !inter.checkIssued(root) || !inter.verify(root.publicKey))
      return fail(
        `${p.intCert} is not a CA certificate issued and signed by ${p.rootCert}`,
        `restore ${sh(p.intCert)} (and its key) from your backup`,
      );
    try {
      const key = readPrivateKeyFile(p.intKey);
      if (!createPublicKey(key).equals(inter.publicKey))
        return fail(
          `${p.intKey} is not the key of ${p.intCert}`,
          `restore the matching ${sh(p.intKey)} from your backup`,
        );
    } catch (e) {
      const err = toSigilError(e);
      const { detail, fix } = splitFix(err.message);
      return fail(`${err.code}: ${detail}`, fix ?? `restore ${sh(p.intKey)} (mode 0600, owned by the issuer's user)`);
    }
    const now = ctx.now();
    for (const [what, c, file] of [
      ['root', root, p.rootCert],
      ['intermediate', inter, p.intCert],
    ] as const) {
      const from = Date.parse(c.validFrom);
      const to = Date.parse(c.validTo);
      if (now < from)
        return fail(
          `the ${what} certificate is not valid before ${new Date(from).toISOString()} (this machine's clock?)`,
          'check the clock: timedatectl',
        );
      if (now > to)
        return fail(
          `the ${what} certificate ${file} expired at ${new Date(to).toISOString()}`,
          what === 'root'
            ? 'a new root means a new ca_pin for every agent: plan a CA rotation (docs/runbook.md)'
            : REPLACE_INTERMEDIATE,
        );
      if (to - now < CA_EXPIRY_WARN_MS) {
        return warn(
          `the ${what} certificate ${file} expires at ${new Date(to).toISOString()} (in ${Math.floor((to - now) / DAY)} days)`,
          what === 'root'
            ? 'plan a CA rotation before it expires (docs/runbook.md)'
            : `before it expires: ${REPLACE_INTERMEDIATE}`,
        );
      }
    }
    const days = (c: X509Certificate): number => Math.floor((Date.parse(c.validTo) - now) / DAY);
    const rootKey = existsSync(p.rootKey) ? 'root key present (consider moving it offline)' : 'root key offline';
    return ok(
      `root and intermediate verify; intermediate key matches; expire in ${days(root)} and ${days(inter)} days; ${rootKey}`,
    );
  },
};
