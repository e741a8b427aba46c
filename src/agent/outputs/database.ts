/**
 * The `database` output: a TLS client certificate whose CN is the database user the role grants
 * (PostgreSQL `cert` authentication, MySQL `REQUIRE SUBJECT`), for a fresh key:
 *
 *   tls.key   private key (PKCS#8, or TSS2 PRIVATE KEY with `key: tpm`)   0600
 *   tls.crt   client certificate + issuing intermediate                   0644   sslcert
 *   ca.crt    Sigil root(s)                                               0644   sslrootcert
 *
 * libpq: `sslmode=verify-full sslcert=<dir>/tls.crt sslkey=<dir>/tls.key sslrootcert=<dir>/ca.crt`
 * (the server certificate must then chain to the Sigil root too; see docs/credentials.md).
 */
import { X509Certificate } from 'node:crypto';
import { SigilError } from '../../errors.js';
import type { CredentialResult } from '../../protocol/credential-messages.js';
import { fromPem } from '../../pki/pem.js';
import type { CredentialOutputConfig } from './config.js';
import {
  KEY_MODE,
  PUBLIC_MODE,
  withNewline,
  writeOutputFiles,
  type CredentialDestination,
  type Prepared,
} from './credential-output.js';
import type { TpmAccesses } from '../../keystore/tpm-access.js';
import { createOutputKey } from './output-key.js';

type DatabaseConfig = Extract<CredentialOutputConfig, { type: 'database' }>;

/** The leaf the issuer returned must certify exactly the key we asked for. */
export function checkChainFor(result: CredentialResult, spkiPem: string): void {
  if (!result.chain?.length || !result.bundle?.length)
    throw new SigilError(
      'response_invalid',
      `the issuer answer carries no certificate chain for the ${result.kind} output`,
    );
  const leaf = new X509Certificate(result.chain[0]!);
  const want = fromPem(spkiPem, 'PUBLIC KEY', 'response_invalid');
  if (!leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(want))
    throw new SigilError('response_invalid', 'the issuer certified another key than the one requested');
}

/** `tpm`: the agent's TPMs, for a `key: tpm` output. */
export function databaseOutput(cfg: DatabaseConfig, tpm?: TpmAccesses): CredentialDestination {
  return {
    config: cfg,
    files: ['tls.key', 'tls.crt', 'ca.crt'],
    async prepare(): Promise<Prepared> {
      const key = await createOutputKey(cfg.key ?? 'software', cfg.tcti, tpm);
      return {
        fields: {
          kind: 'database',
          csr: key.csrPem,
          ...(cfg.db_user ? { db_user: cfg.db_user } : {}),
          ...(cfg.ttl !== undefined ? { ttl_s: cfg.ttl } : {}),
        },
        secret: { keyPem: key.keyPem, spkiPem: key.spkiPem },
      };
    },
    write(result, prepared) {
      checkChainFor(result, prepared.secret!.spkiPem!);
      writeOutputFiles(cfg, [
        { name: 'ca.crt', data: result.bundle!.map(withNewline).join(''), mode: PUBLIC_MODE },
        { name: 'tls.key', data: withNewline(prepared.secret!.keyPem!), mode: KEY_MODE },
        { name: 'tls.crt', data: result.chain!.map(withNewline).join(''), mode: PUBLIC_MODE },
      ]);
    },
  };
}
