/**
 * An SSH certificate authority: one private key (Ed25519 or ECDSA) that signs either user or
 * host certificates — never both, so a host CA compromise cannot mint logins and a user CA in
 * TrustedUserCAKeys cannot vouch for hosts. Also renders the lines consumers configure:
 *
 *   user CA → sshd:   TrustedUserCAKeys file line   `ssh-ed25519 AAAA… sigil-user-ca@<td>`
 *   host CA → ssh:    known_hosts line              `@cert-authority <pattern> ssh-ed25519 AAAA… …`
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { encodeSshCertificate, type SshCertificateRequest, type SshCertType } from './certificate.js';
import { formatAuthorizedKey, sshFingerprint, sshPublicKeyFromKeyObject, type SshPublicKey } from './public-key.js';
import { signatureFormat } from './signature.js';

export class SshCertificateAuthority {
  readonly publicKey: SshPublicKey;
  /** The CA's public key as a node:crypto key (to compare with keys of a rotation). */
  readonly signingPublicKey: KeyObject;

  constructor(
    private readonly key: KeyObject,
    readonly certType: SshCertType,
    /** Comment written after the key, e.g. `sigil-user-ca@example.org`. */
    readonly comment: string,
  ) {
    if (key.type !== 'private') throw new TypeError('an SSH CA needs its private key');
    this.publicKey = sshPublicKeyFromKeyObject(key);
    this.signingPublicKey = createPublicKey(key);
    signatureFormat(this.publicKey); // throws for RSA: CA keys are Ed25519 or ECDSA
  }

  /** Sign a certificate of this CA's type; returns the certificate blob. */
  issue(req: Omit<SshCertificateRequest, 'type'>): Buffer {
    return encodeSshCertificate({ ...req, type: this.certType }, this.key, this.publicKey);
  }

  /** The CA public key as an authorized_keys / TrustedUserCAKeys line. */
  authorizedKeyLine(): string {
    return formatAuthorizedKey(this.publicKey.blob, this.comment);
  }

  /** `@cert-authority <patterns> <key>`: trust host certificates from this CA (ssh(1) known_hosts). */
  knownHostsLine(patterns = '*'): string {
    if (/\s/.test(patterns) || patterns === '')
      throw new TypeError('known_hosts host patterns are comma-separated, without spaces');
    return `@cert-authority ${patterns} ${formatAuthorizedKey(this.publicKey.blob, this.comment)}`;
  }

  get fingerprint(): string {
    return sshFingerprint(this.publicKey.blob);
  }
}
