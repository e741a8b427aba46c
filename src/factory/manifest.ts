/**
 * The factory manifest: JSON Lines, one provisioned device per line, read by
 * `sigil ctl devices import` (server/admin/devices.ts) to pre-register the devices.
 *
 *   {"serial":"GW-0001","ek_public_hash":"sha256:…","ek_kind":"rsa-2048","ek_cert_serial":"…",
 *    "ek_cert_issuer":"CN=…","idevid_fingerprint":"sha256:…","idevid_serial":"…",
 *    "persistent_handle":"0x81000100","provisioned_at":"2025-01-01T00:00:00.000Z"}
 *
 * Crash safety: a line is appended with one write(2) on an O_APPEND descriptor and fsynced
 * before the device counts as provisioned. O_APPEND never rewrites earlier bytes, so a crash
 * can at worst leave the *last* line torn; before appending, a file that does not end in a
 * newline gets one first, so the torn line stays a line of its own (the import names it by
 * line number) instead of swallowing the next device.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  writeSync,
  constants,
} from 'node:fs';
import { dirname } from 'node:path';
import { SigilError } from '../errors.js';
import { ensureDir } from '../util/atomic-file.js';
import { ekPublicHash } from '../attest/ek.js';
import { publicKeySpki } from '../tpm/structures/keys.js';
import type { Tpm2bPublic } from '../tpm/structures/public.js';

export interface ManifestLine {
  serial: string;
  /** sha256:<hex> of the EK's SubjectPublicKeyInfo DER, as the tpm join names EKs (attest/ek.ts). */
  ek_public_hash: string;
  /** Which EK was hashed: rsa-2048, ecc-p256 or ecc-p384. */
  ek_kind: string;
  /** The EK certificate's serial (lowercase hex) and issuer DN, when the TPM has one. */
  ek_cert_serial?: string;
  ek_cert_issuer?: string;
  /** sha256:<hex> of the IDevID certificate DER: what the issuer matches a join by. */
  idevid_fingerprint: string;
  idevid_serial: string;
  idevid_subject: string;
  idevid_not_after: string;
  /** The persistent handle of the IDevID key, "0x81000100". */
  persistent_handle: string;
  /** NV index holding the IDevID certificate DER, when one was written. */
  nv_index?: string;
  provisioned_at: string;
}

export function fingerprintOf(der: Buffer): string {
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

/**
 * The EK's name in the manifest: the tpm join's `ek_public_hash` (attest/ek.ts) — sha256:<hex>
 * of the EK's SubjectPublicKeyInfo DER, what `openssl pkey -pubin -outform DER | sha256sum`
 * prints for the EK certificate's key — so an x509 rule with `require_tpm` can compare the EK a
 * device proves with the one the factory recorded, and a tpm rule's allow list can use it.
 */
export function manifestEkHash(pub: Tpm2bPublic): string {
  return ekPublicHash(publicKeySpki(pub.value));
}

/** Serials already in a manifest (unparseable lines are skipped: the import reports them). */
export function manifestSerials(path: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!existsSync(path)) return out;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SigilError(
      'config_invalid',
      `cannot read the manifest ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    try {
      const v = JSON.parse(line) as { serial?: unknown };
      if (typeof v.serial === 'string') out.set(v.serial, i + 1);
    } catch {
      // torn or foreign line
    }
  });
  return out;
}

function endsWithNewline(fd: number): boolean {
  const size = fstatSync(fd).size;
  if (size === 0) return true;
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, size - 1);
  return b[0] === 0x0a;
}

/** Open for appending (never through a symlink), creating it 0644 and its directory if needed. */
function openForAppend(path: string): { fd: number; created: boolean } {
  const created = !existsSync(path);
  try {
    if (created) ensureDir(dirname(path), 0o755);
    return {
      fd: openSync(path, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o644),
      created,
    };
  } catch (e) {
    const why = e instanceof SigilError ? e.message : ((e as NodeJS.ErrnoException).code ?? 'error');
    throw new SigilError('config_invalid', `cannot open the manifest ${path} for appending: ${why}`);
  }
}

/** Fail before any TPM is touched when the manifest cannot be appended to (creates it empty). */
export function checkManifestWritable(path: string): void {
  const { fd, created } = openForAppend(path);
  closeSync(fd);
  if (created) fsyncDir(dirname(path));
}

/** Append one line (durably) to the manifest at `path`, creating it 0644 if needed. */
export function appendManifestLine(path: string, line: ManifestLine): void {
  const text = JSON.stringify(line);
  if (text.includes('\n')) throw new TypeError('a manifest line must not contain a newline');
  const { fd, created } = openForAppend(path);
  try {
    const payload = Buffer.from(`${endsWithNewline(fd) ? '' : '\n'}${text}\n`, 'utf8');
    // One write(2): O_APPEND makes it land after whatever is there, in one piece.
    const n = writeSync(fd, payload);
    if (n !== payload.length)
      throw new SigilError('internal', `short write to the manifest ${path} (${n} of ${payload.length} bytes)`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (created) fsyncDir(dirname(path));
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on directories; the data itself is synced.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
