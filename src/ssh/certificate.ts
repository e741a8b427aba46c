/**
 * OpenSSH certificates (PROTOCOL.certkeys; draft-ietf-sshm-cert §2). A certificate is a public
 * key blob of type `<key type>-cert-v01@openssh.com`:
 *
 *   string    cert type name, e.g. "ssh-ed25519-cert-v01@openssh.com"
 *   string    nonce                    (CA-chosen random, defeats chosen-prefix hash attacks)
 *   ...       the subject key's fields (its blob without the leading type string)
 *   uint64    serial
 *   uint32    type                     1 = user, 2 = host
 *   string    key id                   (logged by sshd; Sigil puts the SPIFFE ID here)
 *   string    valid principals         (packed strings; EMPTY MEANS ANY — never issued here)
 *   uint64    valid after              (seconds since the epoch)
 *   uint64    valid before
 *   string    critical options         (name, data) pairs, sorted by name; a value is itself
 *   string    extensions               a string inside data; a flag has empty data
 *   string    reserved                 (empty)
 *   string    signature key            (the CA's public key blob)
 *   string    signature                over everything above
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { SigilError, type ErrorCode } from '../errors.js';
import { parseSshPublicKeyBlob, type SshKeyType, type SshPublicKey } from './public-key.js';
import { sshSign, sshVerify } from './signature.js';
import { SshReader, SshWriter } from './wire.js';

export type SshCertType = 'user' | 'host';
const TYPE_CODE: Record<SshCertType, number> = { user: 1, host: 2 };
const CERT_SUFFIX = '-cert-v01@openssh.com';

/** Flags OpenSSH understands for user certificates (sshd(8) honours exactly these). */
export const USER_EXTENSIONS = [
  'no-touch-required',
  'permit-X11-forwarding',
  'permit-agent-forwarding',
  'permit-port-forwarding',
  'permit-pty',
  'permit-user-rc',
] as const;
export type SshExtension = (typeof USER_EXTENSIONS)[number];

export interface SshCertificateRequest {
  subject: SshPublicKey;
  serial: bigint;
  type: SshCertType;
  keyId: string;
  principals: readonly string[];
  validAfter: Date;
  validBefore: Date;
  /** e.g. { 'force-command': '/usr/bin/backup', 'source-address': '10.0.0.0/8' } (user certs only). */
  criticalOptions?: Readonly<Record<string, string>>;
  /** Flag extensions (user certs only; host certs carry none). */
  extensions?: readonly string[];
  /** Fixed nonce for test vectors; random 32 bytes otherwise. */
  nonce?: Buffer;
}

export interface SshCertificate {
  certType: string;
  nonce: Buffer;
  subject: SshPublicKey;
  serial: bigint;
  type: SshCertType;
  keyId: string;
  principals: string[];
  validAfter: Date;
  validBefore: Date;
  criticalOptions: Record<string, string>;
  extensions: Record<string, string>;
  signatureKey: SshPublicKey;
  /** The whole certificate blob. */
  blob: Buffer;
}

const toSeconds = (d: Date): bigint => BigInt(Math.floor(d.getTime() / 1000));

/** (name, data) pairs sorted by name; a value becomes a string inside data (PROTOCOL.certkeys). */
function encodeOptions(pairs: ReadonlyArray<readonly [string, string | null]>): Buffer {
  const sorted = [...pairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const w = new SshWriter();
  for (let i = 0; i < sorted.length; i++) {
    const [name, value] = sorted[i]!;
    if (i > 0 && sorted[i - 1]![0] === name) throw new TypeError(`certificate option ${name} given twice`);
    w.string(name).string(value === null ? Buffer.alloc(0) : new SshWriter().string(value).toBuffer());
  }
  return w.toBuffer();
}

function checkRequest(req: SshCertificateRequest): void {
  if (req.principals.length === 0)
    throw new TypeError('an SSH certificate without principals is valid for ANY principal; refusing to issue one');
  for (const p of req.principals)
    if (p.length === 0 || p.includes('\0')) throw new TypeError(`invalid principal ${JSON.stringify(p)}`);
  if (req.validBefore.getTime() <= req.validAfter.getTime())
    throw new TypeError('validBefore must be after validAfter');
  if (req.serial < 0n || req.serial > 0xffffffffffffffffn) throw new TypeError('serial must be a uint64');
  if (req.type === 'host' && (Object.keys(req.criticalOptions ?? {}).length > 0 || (req.extensions ?? []).length > 0)) {
    throw new TypeError('host certificates carry no critical options or extensions');
  }
}

/** Build and sign a certificate; returns its blob. */
export function encodeSshCertificate(req: SshCertificateRequest, caKey: KeyObject, ca: SshPublicKey): Buffer {
  checkRequest(req);
  const subject = new SshReader(req.subject.blob, 'internal', 'subject key');
  const keyType = subject.text('key type');
  const nonce = req.nonce ?? randomBytes(32);
  const tbs = new SshWriter()
    .string(keyType + CERT_SUFFIX)
    .string(nonce)
    .raw(subject.rest())
    .uint64(req.serial)
    .uint32(TYPE_CODE[req.type])
    .string(req.keyId)
    .string(req.principals.reduce((w, p) => w.string(p), new SshWriter()).toBuffer())
    .uint64(toSeconds(req.validAfter))
    .uint64(toSeconds(req.validBefore))
    .string(encodeOptions(Object.entries(req.criticalOptions ?? {})))
    .string(encodeOptions((req.extensions ?? []).map((e) => [e, null] as const)))
    .string(Buffer.alloc(0))
    .string(ca.blob)
    .toBuffer();
  return new SshWriter()
    .raw(tbs)
    .string(sshSign(caKey, ca, tbs))
    .toBuffer();
}

function decodeOptions(data: Buffer, code: ErrorCode, what: string): Record<string, string> {
  const r = new SshReader(data, code, what);
  const out: Record<string, string> = {};
  let last = '';
  while (r.remaining > 0) {
    const name = r.text('option name');
    if (name <= last) r.fail('options are not sorted by name or repeat');
    last = name;
    out[name] = optionValue(r.string('option data'), code, `${what} ${name}`);
  }
  return out;
}

/** A flag has empty data; a value is a string inside the data string. */
function optionValue(data: Buffer, code: ErrorCode, what: string): string {
  if (data.length === 0) return '';
  const inner = new SshReader(data, code, what);
  const v = inner.text('option value');
  inner.end();
  return v;
}

/**
 * Parse a certificate blob and verify its CA signature. Any malformation or a bad signature is
 * `code` (the agent uses it to check what the issuer sent; tests to check what we encode).
 */
export function parseSshCertificate(blob: Buffer, code: ErrorCode = 'bad_certificate'): SshCertificate {
  const r = new SshReader(blob, code, 'SSH certificate');
  const certType = r.text('certificate type');
  if (!certType.endsWith(CERT_SUFFIX)) r.fail(`${certType} is not an OpenSSH certificate type`);
  const keyType = certType.slice(0, -CERT_SUFFIX.length) as SshKeyType;
  const nonce = r.string('nonce');
  // The subject key fields run up to the serial; re-read them through the plain-key parser.
  const start = r.offset;
  const fieldCount = keyType === 'ssh-ed25519' ? 1 : 2;
  for (let i = 0; i < fieldCount; i++) r.string('subject key field');
  const subjectFields = blob.subarray(start, r.offset);
  const subject = parseSshPublicKeyBlob(
    new SshWriter().string(keyType).raw(subjectFields).toBuffer(),
    code,
    'certified key',
  );
  const serial = r.uint64('serial');
  const typeCode = r.uint32('type');
  const type: SshCertType =
    typeCode === 1 ? 'user' : typeCode === 2 ? 'host' : r.fail(`unknown certificate type ${typeCode}`);
  const keyId = r.text('key id');
  const pr = new SshReader(r.string('principals'), code, 'SSH certificate principals');
  const principals: string[] = [];
  while (pr.remaining > 0) principals.push(pr.text('principal'));
  const validAfter = new Date(Number(r.uint64('valid after')) * 1000);
  const validBeforeRaw = r.uint64('valid before');
  // 0xffffffffffffffff means "forever"; clamp so a Date can hold it.
  const validBefore = new Date(
    Number(validBeforeRaw > 8_640_000_000_000n ? 8_640_000_000_000n : validBeforeRaw) * 1000,
  );
  const criticalOptions = decodeOptions(r.string('critical options'), code, 'critical options');
  const extensions = decodeOptions(r.string('extensions'), code, 'extensions');
  r.string('reserved');
  const signatureKey = parseSshPublicKeyBlob(r.string('signature key'), code, 'signature key');
  const signedLength = r.offset;
  const signature = r.string('signature');
  r.end();
  if (!sshVerify(signatureKey, blob.subarray(0, signedLength), signature, code))
    throw new SigilError(code, 'SSH certificate: the CA signature does not verify');
  return {
    certType,
    nonce,
    subject,
    serial,
    type,
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions,
    extensions,
    signatureKey,
    blob: Buffer.from(blob),
  };
}

/** The `.pub` line of a certificate: `<cert type> <base64> [comment]`. */
export function formatCertificateLine(blob: Buffer, comment = ''): string {
  const type = new SshReader(blob, 'internal', 'SSH certificate').text('certificate type');
  return `${type} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}

/** Parse a `-cert.pub` line back into the certificate (signature verified). */
export function parseCertificateLine(line: string, code: ErrorCode = 'bad_certificate'): SshCertificate {
  const m = /^\s*(\S+-cert-v01@openssh\.com)\s+([A-Za-z0-9+/]+={0,2})(?:\s.*)?$/s.exec(line);
  if (!m) throw new SigilError(code, 'not an OpenSSH certificate line');
  const cert = parseSshCertificate(Buffer.from(m[2]!, 'base64'), code);
  if (cert.certType !== m[1]) throw new SigilError(code, 'the certificate line type does not match its blob');
  return cert;
}
