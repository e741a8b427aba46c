/**
 * The `ssh_user` output: an OpenSSH user certificate (principals = logins the role grants) for a
 * fresh Ed25519 key, and a client configuration that trusts hosts by Sigil's host CA, so that
 * `ssh -F <dir>/ssh_config <host>` just works for Ansible, backups and other automation:
 *
 *   id            OpenSSH private key        0600
 *   id.pub        public key                 0644
 *   id-cert.pub   user certificate           0644
 *   known_hosts   @cert-authority line       0644   (StrictHostKeyChecking yes, no TOFU)
 *   ssh_config    IdentityFile, CertificateFile, UserKnownHostsFile, …   0644
 */
import { generateKeyPairSync } from 'node:crypto';
import path from 'node:path';
import { SigilError } from '../../errors.js';
import type { CredentialResult } from '../../protocol/credential-messages.js';
import { parseCertificateLine } from '../../ssh/certificate.js';
import { formatAuthorizedKey, parseAuthorizedKey, sshPublicKeyFromKeyObject } from '../../ssh/public-key.js';
import { encodeOpenSshPrivateKey } from '../../ssh/private-key.js';
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

type SshUserConfig = Extract<CredentialOutputConfig, { type: 'ssh_user' }>;

/** ssh_config(5) arguments: double-quoted (paths may contain spaces), `%` escaped (tokens). */
const quote = (s: string): string => `"${s.replace(/%/g, '%%')}"`;

export function renderSshConfig(dir: string, hosts: readonly string[], login: string | undefined): string {
  const lines = [
    '# Written by sigil (ssh_user output); rewritten at every rotation — do not edit.',
    `# Use: ssh -F ${path.join(dir, 'ssh_config')} <host>`,
    `Host ${hosts.join(' ')}`,
    `    IdentityFile ${quote(path.join(dir, 'id'))}`,
    `    CertificateFile ${quote(path.join(dir, 'id-cert.pub'))}`,
    '    IdentitiesOnly yes',
    `    UserKnownHostsFile ${quote(path.join(dir, 'known_hosts'))}`,
    '    GlobalKnownHostsFile /dev/null',
    '    StrictHostKeyChecking yes',
    '    UpdateHostKeys no',
    '    PasswordAuthentication no',
    '    KbdInteractiveAuthentication no',
  ];
  if (login !== undefined) lines.push(`    User ${login}`);
  return lines.join('\n') + '\n';
}

/** A fresh certificate and key pair must belong together; the issuer answer is checked before writing. */
export function checkCertificateFor(
  result: CredentialResult,
  publicKeyLine: string,
  type: 'user' | 'host',
): ReturnType<typeof parseCertificateLine> {
  if (!result.certificate) throw new SigilError('response_invalid', `the issuer answer carries no ${type} certificate`);
  const cert = parseCertificateLine(result.certificate, 'response_invalid');
  if (cert.type !== type || !cert.subject.blob.equals(parseAuthorizedKey(publicKeyLine, 'response_invalid').blob)) {
    throw new SigilError(
      'response_invalid',
      `the issuer returned a ${cert.type} certificate for another key than the one requested`,
    );
  }
  return cert;
}

export function sshUserOutput(cfg: SshUserConfig): CredentialDestination {
  const hosts = cfg.hosts ?? ['*'];
  return {
    config: cfg,
    files: ['id', 'id-cert.pub', 'known_hosts', 'ssh_config'],
    async prepare(): Promise<Prepared> {
      const { privateKey } = generateKeyPairSync('ed25519');
      const publicLine = formatAuthorizedKey(sshPublicKeyFromKeyObject(privateKey).blob, 'sigil');
      return {
        fields: {
          kind: 'ssh_user',
          public_key: publicLine,
          ...(cfg.logins ? { logins: cfg.logins } : {}),
          ...(cfg.ttl !== undefined ? { ttl_s: cfg.ttl } : {}),
        },
        secret: { privateKey: encodeOpenSshPrivateKey(privateKey, 'sigil'), publicLine },
      };
    },
    write(result, prepared) {
      const publicLine = prepared.secret!.publicLine!;
      const cert = checkCertificateFor(result, publicLine, 'user');
      const hostCas = sshCaLines('host', result.host_ca_public_key, result.other_host_ca_public_keys);
      const login = cert.principals.length === 1 ? cert.principals[0] : undefined;
      writeOutputFiles(cfg, [
        { name: 'id', data: prepared.secret!.privateKey!, mode: KEY_MODE },
        { name: 'id.pub', data: withNewline(publicLine), mode: PUBLIC_MODE },
        {
          name: 'known_hosts',
          data: hostCas.map((line) => `@cert-authority ${hosts.join(',')} ${line}\n`).join(''),
          mode: PUBLIC_MODE,
        },
        { name: 'ssh_config', data: renderSshConfig(cfg.path, hosts, login), mode: PUBLIC_MODE },
        { name: 'id-cert.pub', data: withNewline(result.certificate!), mode: PUBLIC_MODE },
      ]);
    },
  };
}
