/**
 * Building the x509 join agent from the agent's configuration (agent.yaml, snake_case):
 *
 *   join:
 *     method: x509
 *     x509:
 *       cert: /etc/sigil/idevid.pem        # device certificate, optionally followed by intermediates
 *       chain: /etc/sigil/idevid-chain.pem # optional, more intermediates
 *       key: /etc/sigil/idevid.key         # PEM private key (EC P-256/P-384 or RSA), or…
 *       key_uri: "pkcs11:token=sigil;object=idevid"   # …a key on a PKCS#11 token (RFC 7512)
 *       rsa_scheme: pss                    # RSA keys: pss (default) or pkcs1
 *       pkcs11: { module: /usr/lib/softhsm/libsofthsm2.so, pin_file: /etc/sigil/pin }   # or pin_env
 *
 * The schema is exported for the agent's config loader; {@link x509JoinAgentFromConfig} turns
 * a parsed block into the method.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { PemKeySigner } from '../../keystore/pem-key.js';
import { Pkcs11Signer, type Pkcs11KeyRef } from '../../keystore/pkcs11.js';
import { parsePkcs11Uri } from '../../keystore/pkcs11/uri.js';
import type { DeviceSigner } from '../../keystore/signer.js';
import { X509JoinAgent } from './agent.js';

const path = z.string().min(1).max(4096);

export const x509AgentConfigSchema = z
  .strictObject({
    cert: path,
    chain: path.optional(),
    key: path.optional(),
    key_uri: z.string().min(8).max(4096).optional(),
    rsa_scheme: z.enum(['pss', 'pkcs1']).optional(),
    pkcs11: z
      .strictObject({
        module: path.optional(),
        pin_file: path.optional(),
        pin_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'pin_env is the NAME of an environment variable').optional(),
      })
      .optional(),
  })
  .refine((c) => (c.key === undefined) !== (c.key_uri === undefined), { message: 'give exactly one of key (a PEM file) or key_uri (pkcs11:…)' });
export type X509AgentConfig = z.infer<typeof x509AgentConfigSchema>;

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new SigilError('config_invalid', `cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** The device key a config names (PEM file or PKCS#11 URI). */
export function deviceKeyFromConfig(cfg: X509AgentConfig): DeviceSigner {
  const rsa = cfg.rsa_scheme === 'pkcs1' ? 'RS256' : 'PS256';
  if (cfg.key !== undefined) return PemKeySigner.fromFile(cfg.key, { rsa });
  const uri = cfg.key_uri!;
  if (!uri.startsWith('pkcs11:')) throw new SigilError('config_invalid', `join.x509.key_uri "${uri.slice(0, 40)}" is not supported (use pkcs11:…; TPM-resident device keys come with the tpm join)`);
  const u = parsePkcs11Uri(uri);
  const module = u.modulePath ?? cfg.pkcs11?.module;
  if (module === undefined) throw new SigilError('config_invalid', 'join.x509: the PKCS#11 module is needed (pkcs11.module, or module-path= in key_uri)');
  if (u.token === undefined) throw new SigilError('config_invalid', 'join.x509.key_uri needs token=<label>');
  const ref: Pkcs11KeyRef = {
    storage: 'pkcs11',
    module,
    tokenLabel: u.token,
    ...(u.object !== undefined ? { keyLabel: u.object } : {}),
    ...(u.id !== undefined ? { keyId: u.id.toString('hex') } : {}),
    ...(u.pinFile ?? cfg.pkcs11?.pin_file ? { pinFile: (u.pinFile ?? cfg.pkcs11?.pin_file)! } : {}),
    ...(cfg.pkcs11?.pin_env !== undefined ? { pinEnv: cfg.pkcs11.pin_env } : {}),
  };
  return Pkcs11Signer.open(ref, { rsa });
}

export function x509JoinAgentFromConfig(cfg: X509AgentConfig): X509JoinAgent {
  const key = deviceKeyFromConfig(cfg);
  try {
    const certPem = readText(cfg.cert, 'device certificate');
    const chainPem = cfg.chain !== undefined ? readText(cfg.chain, 'certificate chain') : undefined;
    return X509JoinAgent.fromPem(certPem, key, chainPem);
  } catch (e) {
    key.close?.();
    throw e;
  }
}
