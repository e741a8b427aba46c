/**
 * The keys behind the non-X.509 credentials, kept next to the CA in the data directory:
 *
 *   ca/ssh_user_ca.key   Ed25519   signs SSH user certificates (sshd: TrustedUserCAKeys)
 *   ca/ssh_host_ca.key   Ed25519   signs SSH host certificates (ssh: @cert-authority)
 *   ca/jwt_signing.key   P-256     signs JWT-SVIDs (ES256), published at /v1/jwks
 *
 * PKCS#8 PEM, 0600. `server init` creates them; a data directory initialised before they existed
 * gets them on its first start (./key-file.ts creates each once, race-free), so upgrading needs
 * no migration step. Two SSH CAs, not one: a user CA trusted by every sshd must not also be
 * able to vouch for hosts, and the other way round.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { SigilError } from '../errors.js';
import { ensureKeyFile, readPrivateKeyFile } from './key-file.js';

export interface CredentialKeys {
  sshUserCa: KeyObject;
  sshHostCa: KeyObject;
  jwtSigning: KeyObject;
}

export const credentialKeyPaths = (dir: string) => ({
  sshUserCa: join(dir, 'ca', 'ssh_user_ca.key'),
  sshHostCa: join(dir, 'ca', 'ssh_host_ca.key'),
  jwtSigning: join(dir, 'ca', 'jwt_signing.key'),
});

const ed25519 = (): KeyObject => generateKeyPairSync('ed25519').privateKey;
const p256 = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

/** Load the credential keys of `dir` (an initialised issuer), creating any that are missing. */
export function ensureCredentialKeys(dir: string): CredentialKeys & { created: string[] } {
  const created: string[] = [];
  const keys = loadCredentialKeys(dir, (file, make) => {
    const r = ensureKeyFile(file, make);
    if (r.created) created.push(file);
    return r.key;
  });
  return { ...keys, created };
}

/**
 * Read the credential keys of `dir` without creating any: a running issuer reloading them after a
 * rotate-key step (./key-reload.ts) must never make a key of its own — a missing file there is a
 * copy still under way, not a first start.
 */
export function readCredentialKeys(dir: string): CredentialKeys {
  return loadCredentialKeys(dir, (file) => readPrivateKeyFile(file));
}

function loadCredentialKeys(dir: string, read: (file: string, make: () => KeyObject) => KeyObject): CredentialKeys {
  const p = credentialKeyPaths(dir);
  const load = (file: string, make: () => KeyObject, check: (k: KeyObject) => boolean, what: string): KeyObject => {
    const key = read(file, make);
    if (!check(key)) throw new SigilError('config_invalid', `${file} must hold ${what}`);
    return key;
  };
  const sshCa = (k: KeyObject): boolean =>
    k.asymmetricKeyType === 'ed25519' ||
    (k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1');
  return {
    sshUserCa: load(p.sshUserCa, ed25519, sshCa, 'an Ed25519 or ECDSA P-256 private key'),
    sshHostCa: load(p.sshHostCa, ed25519, sshCa, 'an Ed25519 or ECDSA P-256 private key'),
    jwtSigning: load(
      p.jwtSigning,
      p256,
      (k) => k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1',
      'an ECDSA P-256 private key (ES256)',
    ),
  };
}
