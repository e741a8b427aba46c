/**
 * The signers behind the `credential` operation, built once per issuer from the data
 * directory's keys: the SSH user and host CAs and the JWT-SVID key. (X.509 client certificates
 * for databases and Kubernetes come from the same intermediate as SVIDs: IssuerContext.engine.)
 */
import type { CredentialKeys } from '../credential-keys.js';
import { SshCertificateAuthority } from '../../ssh/authority.js';
import { JwtSigner } from './jwt-signer.js';

export interface CredentialAuthorities {
  sshUser: SshCertificateAuthority;
  sshHost: SshCertificateAuthority;
  jwt: JwtSigner;
}

export function createCredentialAuthorities(keys: CredentialKeys, trustDomain: string): CredentialAuthorities {
  return {
    sshUser: new SshCertificateAuthority(keys.sshUserCa, 'user', `sigil-user-ca@${trustDomain}`),
    sshHost: new SshCertificateAuthority(keys.sshHostCa, 'host', `sigil-host-ca@${trustDomain}`),
    jwt: new JwtSigner(keys.jwtSigning),
  };
}
