/**
 * The `ssh_host` output: an OpenSSH host certificate (principals = host names/IPs the role
 * grants) and the user CA sshd should trust:
 *
 *   ssh_host            host key, OpenSSH format       0600   (only when the agent owns the key)
 *   ssh_host.pub        its public key                 0644
 *   ssh_host-cert.pub   host certificate               0644   sshd: HostCertificate
 *   ssh_user_ca.pub     Sigil's user CA                0644   sshd: TrustedUserCAKeys
 *
 * The host key is kept across rotations — generated once (Ed25519) and reused while the file is
 * readable — because only the certificate expires; with `host_key: /etc/ssh/ssh_host_ed25519_key`
 * the existing key is certified instead (its `.pub` is read; the private key is never touched).
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { SigilError } from '../../errors.js';
import { formatAuthorizedKey, parseAuthorizedKey, sshPublicKeyFromKeyObject } from '../../ssh/public-key.js';
import { decodeOpenSshPrivateKey, encodeOpenSshPrivateKey } from '../../ssh/private-key.js';
import type { AtomicFile } from '../../util/atomic-file.js';
import type { CredentialOutputConfig } from './config.js';
import { sshCaLines } from './ssh-ca-lines.js';
import {
  KEY_MODE,
  PUBLIC_MODE,
  withNewline,
  writeOutputFiles,
  type CredentialDestination,
  type Prepared,
} from './credential-output.js';
import { checkCertificateFor } from './ssh-user.js';

type SshHostConfig = Extract<CredentialOutputConfig, { type: 'ssh_host' }>;

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new SigilError('config_invalid', `${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
}

/** The agent's own host key: the one already in the output, or a new Ed25519 key. */
function ownHostKey(file: string): { key: KeyObject; isNew: boolean } {
  if (existsSync(file)) {
    try {
      return { key: decodeOpenSshPrivateKey(readText(file, 'host key'), 'config_invalid', file), isNew: false };
    } catch {
      // Unreadable or corrupt (e.g. written by a crash): make a new one; clients trust the CA, not the key.
    }
  }
  return { key: generateKeyPairSync('ed25519').privateKey, isNew: true };
}

export function sshHostOutput(cfg: SshHostConfig): CredentialDestination {
  const keyFile = path.join(cfg.path, 'ssh_host');
  return {
    config: cfg,
    files: cfg.host_key
      ? ['ssh_host-cert.pub', 'ssh_user_ca.pub']
      : ['ssh_host', 'ssh_host-cert.pub', 'ssh_user_ca.pub'],
    async prepare(): Promise<Prepared> {
      let publicLine: string;
      const secret: Record<string, string> = {};
      if (cfg.host_key) {
        const pub = parseAuthorizedKey(
          readText(`${cfg.host_key}.pub`, 'host_key public key').trim(),
          'config_invalid',
          `${cfg.host_key}.pub`,
        );
        publicLine = formatAuthorizedKey(pub.blob, pub.comment);
      } else {
        const { key, isNew } = ownHostKey(keyFile);
        publicLine = formatAuthorizedKey(sshPublicKeyFromKeyObject(key).blob, 'sigil-host');
        if (isNew) secret.privateKey = encodeOpenSshPrivateKey(key, 'sigil-host');
      }
      secret.publicLine = publicLine;
      return {
        fields: {
          kind: 'ssh_host',
          public_key: publicLine,
          ...(cfg.principals ? { principals: cfg.principals } : {}),
          ...(cfg.ttl !== undefined ? { ttl_s: cfg.ttl } : {}),
        },
        secret,
      };
    },
    write(result, prepared) {
      checkCertificateFor(result, prepared.secret!.publicLine!, 'host');
      const userCas = sshCaLines('user', result.user_ca_public_key, result.other_user_ca_public_keys);
      const files: AtomicFile[] = [];
      if (prepared.secret!.privateKey)
        files.push({ name: 'ssh_host', data: prepared.secret!.privateKey, mode: KEY_MODE });
      if (!cfg.host_key)
        files.push({ name: 'ssh_host.pub', data: withNewline(prepared.secret!.publicLine!), mode: PUBLIC_MODE });
      files.push({ name: 'ssh_user_ca.pub', data: userCas.map((line) => line + '\n').join(''), mode: PUBLIC_MODE });
      files.push({ name: 'ssh_host-cert.pub', data: withNewline(result.certificate!), mode: PUBLIC_MODE });
      writeOutputFiles(cfg, files);
    },
  };
}
