/**
 * The IDevID certificate profile (IEEE 802.1AR-2018 §8) as Sigil's factory issues it:
 *
 *   subject      [O=<org>,] serialNumber=<device serial>, CN=<cn template>   (§8.6: the
 *                serialNumber attribute carries the device serial)
 *   SAN          URI <san template>, default urn:sigil:device:<serial> (not critical: the
 *                subject is not empty, RFC 5280 §4.2.1.6)
 *   KeyUsage     digitalSignature, critical (§8.10.3 / RFC 5280 §4.2.1.3)
 *   EKU          clientAuth (the device authenticates; it never serves)
 *   BasicConstraints cA=FALSE, critical; SKI; AKI = the factory CA's SKI
 *   validity     20 years by default, never past the CA's own notAfter (a certificate that
 *                outlives its issuer fails path validation); IDevIDs live as long as the device
 *
 * Every byte goes through pki/certificate.ts (encodeTbs + signTbsWith), the encoder the
 * issuer's own certificates use; only the signature comes from the CA's Signer.
 */
import { SigilError } from '../errors.js';
import { KEY_USAGE } from '../pki/cert-reader.js';
import { checkValidity, encodeTbs, signerAlgorithmId, signTbsWith } from '../pki/certificate.js';
import { integer, time } from '../pki/der.js';
import { basicConstraints, extKeyUsage, keyUsage, subjectAltName, subjectKeyIdentifier } from '../pki/extensions.js';
import { encodeName, type NameSpec } from '../pki/name.js';
import { OID } from '../pki/oids.js';
import { randomSerial, serialHex } from '../pki/serial.js';
import { classifySpki, keyIdentifier, readSpki } from '../pki/spki.js';
import type { FactoryCa } from './ca.js';

export interface IdevidProfile {
  /** CN template; `{serial}` is replaced. Default "{serial}". */
  cnTemplate?: string;
  /** SAN URI template; default "urn:sigil:device:{serial}". */
  sanUriTemplate?: string;
  /** Optional O attribute (manufacturer). */
  organization?: string;
  /** Default 20. */
  validityYears?: number;
}

export interface IssuedIdevid {
  der: Buffer;
  serialHex: string;
  subject: string;
  notAfter: Date;
}

/** Device serials: what goes into PrintableString and file names. */
export const DEVICE_SERIAL_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const YEAR_MS = 365.25 * 86_400_000;
const BACKDATE_MS = 5 * 60_000;
const BC_LEAF = basicConstraints(false);
const KU = keyUsage([KEY_USAGE.digitalSignature]);
const EKU = extKeyUsage([OID.clientAuth]);

export function checkDeviceSerial(serial: string): void {
  if (typeof serial !== 'string' || !DEVICE_SERIAL_RE.test(serial)) {
    throw new SigilError(
      'bad_request',
      `device serial "${String(serial).slice(0, 80)}" must be 1-64 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)`,
    );
  }
}

const fill = (template: string, serial: string): string => template.split('{serial}').join(serial);

export function idevidSubject(profile: IdevidProfile, serial: string): NameSpec {
  const cn = fill(profile.cnTemplate ?? '{serial}', serial);
  return [
    ...(profile.organization ? ([['O', profile.organization]] as const) : []),
    ['serialNumber', serial],
    ['CN', cn],
  ];
}

/** Issue the IDevID certificate for `spkiDer` (the TPM-resident key's public key). */
export async function issueIdevid(
  ca: FactoryCa,
  serial: string,
  spkiDer: Buffer,
  profile: IdevidProfile = {},
  now: Date = new Date(),
): Promise<IssuedIdevid> {
  checkDeviceSerial(serial);
  const key = classifySpki(readSpki(spkiDer, 'unsupported_key', 'IDevID public key'));
  if ('reason' in key) throw new SigilError('unsupported_key', `IDevID key: ${key.reason}`);
  const years = profile.validityYears ?? 20;
  if (!Number.isFinite(years) || years <= 0 || years > 100)
    throw new SigilError('bad_request', `IDevID validity must be between 0 and 100 years (got ${years})`);
  const notBefore = new Date(Math.floor((now.getTime() - BACKDATE_MS) / 1000) * 1000);
  const notAfter = new Date(
    Math.min(Math.floor((now.getTime() + years * YEAR_MS) / 1000) * 1000, ca.notAfter.getTime()),
  );
  checkValidity(notBefore, notAfter);
  const subject = idevidSubject(profile, serial);
  let subjectDer: Buffer;
  let san: Buffer;
  try {
    subjectDer = encodeName(subject);
    san = subjectAltName({ uris: [fill(profile.sanUriTemplate ?? 'urn:sigil:device:{serial}', serial)] }, false);
  } catch (e) {
    throw new SigilError('bad_request', `IDevID name: ${(e as Error).message}`);
  }
  const serialBytes = randomSerial();
  const tbs = encodeTbs({
    serial: integer(serialBytes),
    algorithmId: signerAlgorithmId(ca.signer.algorithm),
    issuer: ca.subjectDer,
    notBefore: time(notBefore),
    notAfter: time(notAfter),
    subject: subjectDer,
    spki: spkiDer,
    extensions: [BC_LEAF, KU, EKU, subjectKeyIdentifier(keyIdentifier(readSpki(spkiDer).publicKey)), ca.akiExt, san],
  });
  const der = await signTbsWith(tbs, ca.signer);
  return { der, serialHex: serialHex(serialBytes), subject: subject.map(([k, v]) => `${k}=${v}`).join(', '), notAfter };
}
