/**
 * The MQTT transport certificate: a TLS client certificate for agents whose identity key cannot
 * be handed to a TLS stack (TPM, PKCS#11). Such an agent sends, inside its signed join or renew
 * request, `transport_csr` — a CSR for a throwaway software key — and gets, next to its SVID, a
 * certificate for that key with the SVID's subject (O=<trust domain>, CN=<instance id>), so a
 * broker that takes the CN as the username (mosquitto `use_identity_as_username`) applies the
 * instance's ACL (`sigil/v1/resp/%u`). It is *not* an identity:
 *
 * - no URI SAN: SPIFFE validators require exactly one (X509-SVID §2), so it can never pass as
 *   an SVID, and renewal refuses it (authenticate.ts wants a bot SPIFFE ID and kind x509-svid);
 * - EKU clientAuth only (pki/issue.ts issueClientCert), so it cannot serve TLS;
 * - the SVID's validity exactly: it lives and dies with the identity it was issued beside.
 *
 * The broker is untrusted for integrity anyway (docs/mqtt.md): every request and answer is
 * signed end to end, so the worst a stolen transport key allows is what the broker's ACL grants
 * that instance — publishing requests it cannot sign and reading answers meant for it.
 */
import { SigilError } from '../../errors.js';
import { parseCsr } from '../../pki/csr.js';
import type { NameSpec } from '../../pki/name.js';
import { toPem } from '../../pki/pem.js';
import { serialHex, timeOrderedSerial } from '../../pki/serial.js';
import type { IssuerContext } from '../issuer.js';
import type { CertificateRecord } from '../store/types.js';

/** The `kind` column of the certificates table for transport certificates. */
export const TRANSPORT_CERT_KIND = 'mqtt-transport';

/**
 * Parse and check a `transport_csr`: a valid self-signed PKCS#10 (bad_csr,
 * csr_signature_invalid), an EC P-256/P-384 key (unsupported_key), and a key of its own — not
 * one of the identity keys given (bad_csr): the identity key must stay where its storage says.
 * Returns the SubjectPublicKeyInfo to certify.
 */
export function checkTransportCsr(text: string, identitySpkis: readonly Buffer[]): Buffer {
  let csr;
  try {
    csr = parseCsr(text);
  } catch (e) {
    if (e instanceof SigilError) throw new SigilError(e.code, `transport_csr: ${e.message}`, { cause: e });
    throw e;
  }
  if (csr.keyType !== 'ec-p256' && csr.keyType !== 'ec-p384') {
    throw new SigilError(
      'unsupported_key',
      `transport_csr: the transport key must be EC P-256 or P-384, not ${csr.keyType}`,
    );
  }
  if (identitySpkis.some((s) => s.equals(csr.spkiDer))) {
    throw new SigilError(
      'bad_csr',
      'transport_csr: carries an identity key; the transport certificate needs a key of its own',
    );
  }
  return csr.spkiDer;
}

export interface TransportCertParams {
  spkiDer: Buffer;
  /** The SVID's subject, exactly (ops/issue.ts svidSubject). */
  subject: NameSpec;
  /** The SVID's validity, exactly. */
  notBefore: number;
  notAfter: number;
}

/** Sign a transport certificate; returns its chain (leaf, intermediate) and its record's serial. */
export function signTransportCert(ctx: IssuerContext, p: TransportCertParams): { serial: string; chain: string[] } {
  if (!p.subject.some(([attr]) => attr === 'CN')) {
    // svidSubject leaves out an over-long instance id; without a CN the broker has no username.
    throw new SigilError(
      'bad_request',
      'transport_csr: the instance id is too long for a certificate CN, so no transport certificate can name it',
    );
  }
  // Recorded next to the SVID: time-ordered like it (ops/issue.ts).
  const serial = timeOrderedSerial(ctx.now());
  let der: Buffer;
  try {
    der = ctx.engine.issueClientCert({
      serial,
      spkiDer: p.spkiDer,
      subject: p.subject,
      notBefore: new Date(p.notBefore),
      notAfter: new Date(p.notAfter),
    });
  } catch (e) {
    if (e instanceof SigilError) throw e;
    throw new SigilError('internal', 'transport certificate signing failed', { cause: e });
  }
  return { serial: serialHex(serial), chain: [toPem('CERTIFICATE', der), ctx.ca.intermediatePem.trim() + '\n'] };
}

/** Its certificate record: a software, exportable key (the agent made it in memory). */
export function transportCertRecord(
  base: Omit<CertificateRecord, 'kind' | 'keyStorage' | 'exportable'>,
): CertificateRecord {
  return { ...base, kind: TRANSPORT_CERT_KIND, keyStorage: 'software', exportable: true };
}
