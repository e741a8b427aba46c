/**
 * `sigil ctl ca export --type …`: the public CA material consumers are configured with.
 *
 *   ssh-user  `ssh-ed25519 AAAA… sigil-user-ca@<td>`  a line for sshd's TrustedUserCAKeys file
 *   ssh-host  `@cert-authority * ssh-ed25519 AAAA…`  a line for ssh's known_hosts
 *   (the ssh kinds print one more line per staged or still-trusted retired CA key: ./rotating-keys.ts)
 *   x509      the root CA certificate (PEM)           sslrootcert, --client-ca-file, Vault certs
 *   jwks      the JWT-SVID key set (JSON)             offline JWT verifiers (Vault jwt_validation_pubkeys)
 */
import { readFileSync } from 'node:fs';
import { SigilError } from '../errors.js';
import { jwks } from './credentials/discovery.js';
import {
  createCredentialAuthorities,
  publishedSshCaLines,
  signingPublicKeys,
  type CredentialAuthorities,
} from './credentials/authorities.js';
import { rotatingOf, type RotatableKey } from './rotating-keys.js';
import { ensureCredentialKeys } from './credential-keys.js';
import { paths, readMeta } from './data-dir.js';
import type { WithdrawnKeyRecord } from './store/types.js';
import { spkiSha256, storeWithdrawalMessage, withdrawnSigningKeys } from './withdrawn-keys.js';

export const CA_EXPORT_TYPES = ['ssh-user', 'ssh-host', 'x509', 'jwks'] as const;
export type CaExportType = (typeof CA_EXPORT_TYPES)[number];

export function exportCaMaterial(
  dataDir: string,
  type: string,
  opts: { hosts?: string; now?: number; withdrawn?: readonly WithdrawnKeyRecord[] } = {},
): string {
  if (!(CA_EXPORT_TYPES as readonly string[]).includes(type)) {
    throw new SigilError('bad_request', `--type must be one of ${CA_EXPORT_TYPES.join(', ')} (got "${type}")`);
  }
  const meta = readMeta(dataDir);
  if (type === 'x509') return readFileSync(paths(dataDir).rootCert, 'utf8');
  const { created: _created, ...keys } = ensureCredentialKeys(dataDir);
  const now = opts.now ?? Date.now();
  const cas = withoutWithdrawn(
    dataDir,
    type === 'jwks' ? 'jwt' : (type as RotatableKey),
    createCredentialAuthorities({ ...keys, ...rotatingOf(dataDir, keys, now) }, meta.trust_domain),
    opts.withdrawn ?? [],
  );
  if (type === 'ssh-user') return publishedSshCaLines(cas, 'user', now).join('\n') + '\n';
  if (type === 'ssh-host') {
    const hosts = opts.hosts ?? '*';
    if (/\s/.test(hosts) || hosts === '')
      throw new SigilError(
        'bad_request',
        '--hosts takes comma-separated known_hosts patterns without spaces, e.g. "*.example.org,10.0.0.*"',
      );
    return publishedSshCaLines(cas, 'host', now)
      .map((line) => `@cert-authority ${hosts} ${line}\n`)
      .join('');
  }
  return JSON.stringify(jwks({ credentials: cas, now: () => now }), null, 2) + '\n';
}

/**
 * What the store remembers as withdrawn (./withdrawn-keys.ts) applied to the files' key set: a
 * signing key it names is refused, as `server start` refuses it, and a staged or retired key it
 * names is not printed — operators paste this output into trust files by hand. Only the kind
 * exported is refused: a withdrawn JWT key says nothing about the SSH CAs.
 */
function withoutWithdrawn(
  dataDir: string,
  kind: RotatableKey,
  cas: CredentialAuthorities,
  withdrawn: readonly WithdrawnKeyRecord[],
): CredentialAuthorities {
  if (withdrawn.length === 0) return cas;
  const signing = signingPublicKeys(cas);
  const [hit] = withdrawnSigningKeys({ [kind]: signing[kind] } as typeof signing, withdrawn);
  if (hit) throw new SigilError('config_invalid', storeWithdrawalMessage(dataDir, hit));
  const ids = new Set(withdrawn.map((w) => `${w.kind}:${w.spkiSha256}`));
  return {
    ...cas,
    rotating: cas.rotating.map((k) =>
      ids.has(`${k.kind}:${spkiSha256(k.publicKey)}`) ? { ...k, state: 'withdrawn' as const } : k,
    ),
  };
}
