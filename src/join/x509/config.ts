/**
 * Building the x509 join agent from the agent's configuration (agent.yaml, snake_case):
 *
 *   join:
 *     method: x509
 *     x509:
 *       cert: /etc/sigil/idevid.pem        # device certificate, optionally followed by intermediates
 *       chain: /etc/sigil/idevid-chain.pem # optional, more intermediates
 *       key: /etc/sigil/idevid.key         # PEM private key (EC P-256/P-384 or RSA), or…
 *       key_uri: "pkcs11:token=sigil;object=idevid"   # …a key on a PKCS#11 token (RFC 7512), or…
 *       key_uri: "tpm:handle=0x81000100;tcti=device:/dev/tpmrm0"   # …a TPM persistent key, or…
 *       tpm: { handle: 0x81000100, tcti: "device:/dev/tpmrm0" }      # …the same as a block
 *                                          # (+ ek: auto|rsa-2048|ecc-p256|ecc-p384, attest: true)
 *       rsa_scheme: pss                    # RSA keys: pss (default) or pkcs1
 *       pkcs11: { module: /usr/lib/softhsm/libsofthsm2.so, pin_file: /etc/sigil/pin }   # or pin_env
 *
 * The schema is exported for the agent's config loader; {@link x509JoinAgentFromConfig} turns
 * a parsed block into the method. A TPM key also sends, unless `attest: false`, the EK/AK
 * evidence that rules with `require_tpm` need (tpm-agent.ts); rules without it ignore it.
 */
import { readFileSync } from 'node:fs';
import { SigilError } from '../../errors.js';
import { PemKeySigner } from '../../keystore/pem-key.js';
import { Pkcs11Signer, type Pkcs11KeyRef } from '../../keystore/pkcs11.js';
import { parsePkcs11Uri } from '../../keystore/pkcs11/uri.js';
import type { DeviceSignatureAlgorithm, DeviceSigner } from '../../keystore/signer.js';
import { TpmAccesses } from '../../keystore/tpm-access.js';
import {
  DEFAULT_TCTI,
  parseTpmHandle,
  parseTpmKeyUri,
  TpmPersistentSigner,
  type TpmPersistentKeyRef,
} from '../../keystore/tpm-persistent.js';
import { readCertificate } from '../../pki/cert-reader.js';
import { pemToDers } from '../../pki/pem.js';
import { classifySpki, readSpki } from '../../pki/spki.js';
import { X509JoinAgent } from './agent.js';
import { DeviceTpmBinding } from './tpm-agent.js';
import type { AgentJoinMethodCode } from '../registry.js';
import type { X509AgentConfig } from './schema.js';
export { x509AgentConfigSchema, type X509AgentConfig } from './schema.js';

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new SigilError(
      'config_invalid',
      `cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

/** The TPM key a config names, if any (key_uri "tpm:…" or the tpm block). */
export function tpmKeyRefFromConfig(cfg: X509AgentConfig): TpmPersistentKeyRef | undefined {
  if (cfg.tpm !== undefined)
    return { handle: parseTpmHandle(cfg.tpm.handle, 'join.x509.tpm.handle'), tcti: cfg.tpm.tcti ?? DEFAULT_TCTI };
  if (cfg.key_uri?.startsWith('tpm:')) return parseTpmKeyUri(cfg.key_uri);
  return undefined;
}

/** ES256/ES384 by curve, RS256 for RSA: what a TPM key of this SPKI signs the challenge with. */
function tpmAlgorithm(spki: Buffer): DeviceSignatureAlgorithm {
  const k = classifySpki(readSpki(spki, 'config_invalid', 'device certificate key'));
  if ('reason' in k) throw new SigilError('config_invalid', `device certificate: ${k.reason}`);
  return k.keyType === 'ec-p256' ? 'ES256' : k.keyType === 'ec-p384' ? 'ES384' : 'RS256';
}

/**
 * The device key a config names (PEM file, PKCS#11 URI, or TPM persistent handle). A TPM key
 * needs `leafSpki`, the device certificate's key: the TPM is only opened at the first signature
 * (agents start offline and fast), and the key found there is checked against it. `tpm`: the
 * holder's TPMs (the agent's; default a set of its own, for a standalone use).
 */
export function deviceKeyFromConfig(
  cfg: X509AgentConfig,
  leafSpki?: Buffer,
  tpm: TpmAccesses = new TpmAccesses(),
): DeviceSigner {
  const rsa = cfg.rsa_scheme === 'pkcs1' ? 'RS256' : 'PS256';
  if (cfg.key !== undefined) return PemKeySigner.fromFile(cfg.key, { rsa });
  const tpmRef = tpmKeyRefFromConfig(cfg);
  if (tpmRef !== undefined) {
    if (leafSpki === undefined) throw new TypeError('deviceKeyFromConfig: a TPM key needs the device certificate key');
    return TpmPersistentSigner.forCertificateKey(tpmRef, leafSpki, tpmAlgorithm(leafSpki), tpm.for(tpmRef.tcti));
  }
  const uri = cfg.key_uri!;
  if (!uri.startsWith('pkcs11:'))
    throw new SigilError(
      'config_invalid',
      `join.x509.key_uri "${uri.slice(0, 40)}" is not supported (pkcs11:… or tpm:…)`,
    );
  const u = parsePkcs11Uri(uri);
  const module = u.modulePath ?? cfg.pkcs11?.module;
  if (module === undefined)
    throw new SigilError(
      'config_invalid',
      'join.x509: the PKCS#11 module is needed (pkcs11.module, or module-path= in key_uri)',
    );
  if (u.token === undefined) throw new SigilError('config_invalid', 'join.x509.key_uri needs token=<label>');
  const ref: Pkcs11KeyRef = {
    storage: 'pkcs11',
    module,
    tokenLabel: u.token,
    ...(u.object !== undefined ? { keyLabel: u.object } : {}),
    ...(u.id !== undefined ? { keyId: u.id.toString('hex') } : {}),
    ...((u.pinFile ?? cfg.pkcs11?.pin_file) ? { pinFile: (u.pinFile ?? cfg.pkcs11?.pin_file)! } : {}),
    ...(cfg.pkcs11?.pin_env !== undefined ? { pinEnv: cfg.pkcs11.pin_env } : {}),
  };
  return Pkcs11Signer.open(ref, { rsa });
}

/** `tpm`: as for {@link deviceKeyFromConfig}; the agent passes its own. */
export function x509JoinAgentFromConfig(cfg: X509AgentConfig, tpm: TpmAccesses = new TpmAccesses()): X509JoinAgent {
  // File and PKCS#11 keys are opened (and their config checked) before the certificate is read;
  // a TPM key needs the certificate's key first and touches the TPM only when it signs.
  const tpmRef = tpmKeyRefFromConfig(cfg);
  const opened = tpmRef === undefined ? deviceKeyFromConfig(cfg) : undefined;
  try {
    const certPem = readText(cfg.cert, 'device certificate');
    const chainPem = cfg.chain !== undefined ? readText(cfg.chain, 'certificate chain') : undefined;
    if (opened !== undefined) return X509JoinAgent.fromPem(certPem, opened, chainPem);
    const leafSpki = Buffer.from(
      readCertificate(pemToDers(certPem, 'CERTIFICATE', 'config_invalid')[0]!, 'config_invalid', 'device certificate')
        .spki,
    );
    const key = deviceKeyFromConfig(cfg, leafSpki, tpm) as TpmPersistentSigner;
    const binding = cfg.tpm?.attest !== false ? new DeviceTpmBinding(key, { ek: cfg.tpm?.ek ?? 'auto' }) : undefined;
    return X509JoinAgent.fromPem(certPem, key, chainPem, binding);
  } catch (e) {
    opened?.close?.();
    throw e;
  }
}

/** The agent side of the x509 join (its registry entry in join/agent-methods.ts loads this file). */
export const x509AgentCode: AgentJoinMethodCode<X509AgentConfig> = {
  create: (settings, ctx) => ({ method: x509JoinAgentFromConfig(settings, ctx.tpm), singleUseCredential: undefined }),
};
