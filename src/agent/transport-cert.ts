/**
 * The agent half of the MQTT transport certificate (server/ops/transport-cert.ts).
 *
 * Over mqtts:// the broker knows an instance by its client certificate (mosquitto
 * `use_identity_as_username`: CN = instance id). A software identity key goes to the TLS stack
 * as it is; a TPM or PKCS#11 key cannot. Such an agent therefore makes a software key for each
 * join and renewal, sends its CSR inside the signed request (`transport_csr`), and presents the
 * certificate the issuer returns with the SVID (`transport_chain`: same subject and validity, no
 * SPIFFE ID, clientAuth only). The identity key never leaves its hardware; the transport key
 * only lets the broker apply the instance's ACL — integrity is end to end either way.
 *
 * The transport key is persisted with the outbox entry (a crash before the answer is committed
 * must find the key the answer certifies) and then with the identity.
 */
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { SoftwareSigner } from '../keystore/software.js';
import type { Signer } from '../keystore/signer.js';
import type { IdentityResult } from '../protocol/messages.js';
import type { Logger } from '../util/log.js';
import type { AgentConfig } from './config.js';
import type { Identity, TransportCert } from './state/index.js';

/** Use a client certificate on the broker only while it has at least this long left (TLS checks validity). */
export const CLIENT_CERT_MARGIN_MS = 30_000;

/** Only a key that is not software needs one, and only an mqtts:// transport presents one. */
export function wantsTransportCert(cfg: Pick<AgentConfig, 'keyStorage' | 'transports'>): boolean {
  return cfg.keyStorage !== 'software' && cfg.transports.some((t) => t.type === 'mqtt' && t.url.startsWith('mqtts:'));
}

/** A fresh transport key (ECDSA P-256 in memory) and the PKCS#8 PEM the outbox keeps. */
export function newTransportKey(): { signer: Signer; pkcs8Pem: string } {
  const signer = SoftwareSigner.generate();
  return { signer, pkcs8Pem: signer.toPkcs8Pem() };
}

/**
 * The transport certificate of an answered request, checked against the key the request was
 * made with (a mismatch would only fail later, in a TLS handshake). Undefined — with a warning —
 * when the issuer sent none (an issuer that predates transport certificates) or an unusable
 * one: the identity is stored all the same and the agent falls back to its bootstrap login.
 */
export function transportCertOf(keyPem: string | undefined, r: IdentityResult, log: Logger): TransportCert | undefined {
  if (keyPem === undefined) return undefined;
  const chain = r.transport_chain;
  if (!chain || chain.length === 0) {
    log.warn(
      { serial: r.serial },
      'the issuer sent no MQTT transport certificate; mqtts:// brokers will see the bootstrap identity',
    );
    return undefined;
  }
  try {
    const leaf = new X509Certificate(chain[0]!);
    if (!leaf.publicKey.equals(createPublicKey(createPrivateKey(keyPem)))) throw new Error('it certifies another key');
    return { keyPem, chainPem: chain, notAfter: Date.parse(leaf.validTo) };
  } catch (e) {
    log.warn(
      { serial: r.serial, reason: (e as Error).message },
      'the MQTT transport certificate is unusable; mqtts:// brokers will see the bootstrap identity',
    );
    return undefined;
  }
}

export type ClientCertKind = 'svid' | 'transport';

/**
 * The TLS client certificate for an mqtts:// broker: the SVID itself when its key is a software
 * key, else the transport certificate — each only while valid for at least
 * {@link CLIENT_CERT_MARGIN_MS}. Undefined: use the bootstrap identity.
 */
export function mqttClientCert(
  id: Identity,
  now: number,
): { kind: ClientCertKind; cert: string; key: string } | undefined {
  if (id.notAfter - CLIENT_CERT_MARGIN_MS <= now) return undefined;
  const ref = softwareKeyRef(id.keyRef);
  if (ref) return { kind: 'svid', cert: id.chainPem.join(''), key: ref };
  const t = id.transport;
  if (t && t.notAfter - CLIENT_CERT_MARGIN_MS > now)
    return { kind: 'transport', cert: t.chainPem.join(''), key: t.keyPem };
  return undefined;
}

/**
 * Why an mqtts agent's renewals may all fail with the issuer up, in one line (undefined: they
 * cannot). A renewal at `fraction` of the lifetime (+10% jitter, schedule.ts) leaves
 * lifetime × (1 − 1.1 × fraction); in the certificate's last CLIENT_CERT_MARGIN_MS the agent
 * goes to the broker with its bootstrap login (mqttClientCert), whose ACL may not let it publish
 * renewals (the example broker's does not) — found by walking the docs with `ttl: 30s`.
 */
export function mqttsRenewalMarginWarning(lifetimeMs: number, fraction: number): string | undefined {
  const leftMs = lifetimeMs * (1 - 1.1 * fraction);
  if (leftMs > CLIENT_CERT_MARGIN_MS) return undefined;
  const minS = Math.ceil((2 * CLIENT_CERT_MARGIN_MS) / (1 - 1.1 * fraction) / 1000);
  return (
    `certificates of ${Math.round(lifetimeMs / 1000)} s renewed at ${fraction} of their lifetime leave as little as ` +
    `${Math.max(0, Math.round(leftMs / 1000))} s; over mqtts the last ${CLIENT_CERT_MARGIN_MS / 1000} s use the bootstrap login, ` +
    `which a broker may not let renew (then the identity expires with the issuer up): ttl of at least ${minS} s, or a lower renew_fraction`
  );
}

/** The PKCS#8 PEM of a software key reference; undefined for any other (or unreadable) reference. */
function softwareKeyRef(json: string): string | undefined {
  try {
    const ref = JSON.parse(json) as { storage?: unknown; pkcs8Pem?: unknown };
    return ref.storage === 'software' && typeof ref.pkcs8Pem === 'string' && ref.pkcs8Pem ? ref.pkcs8Pem : undefined;
  } catch {
    return undefined;
  }
}
