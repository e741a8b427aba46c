/**
 * Certificate serial numbers (RFC 5280 §4.1.2.2): a positive INTEGER of at most 20 octets,
 * unique per CA. Sigil uses 127 random bits (CA/Browser Forum asks for ≥ 64 bits of CSPRNG
 * output), which makes collisions a non-issue without a counter shared between issuers; the
 * certificates the store records (SVIDs, transport certificates) use a time prefix and 80 random
 * bits instead (timeOrderedSerial: the store's serial index is appended to, not written at random).
 */
import { randomFillSync } from 'node:crypto';

export const SERIAL_BYTES = 16;

// randomFillSync costs ~2 µs per call whatever the size, so serials are cut from a pool
// refilled 4 KiB at a time (the same trick node uses for randomUUID). Each byte is used once.
const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolOffset = POOL_SIZE;

/**
 * 16 random octets with the top bit cleared (so the INTEGER is positive without a 0x00 pad)
 * and a non-zero first octet (so DER keeps all 16 octets and every serial has the same length).
 * Leaves 127 − ε bits of randomness.
 */
export function randomSerial(): Buffer {
  const b = Buffer.allocUnsafe(SERIAL_BYTES);
  do {
    if (poolOffset + SERIAL_BYTES > POOL_SIZE) {
      randomFillSync(pool);
      poolOffset = 0;
    }
    poolOffset += pool.copy(b, 0, poolOffset, poolOffset + SERIAL_BYTES);
    b[0]! &= 0x7f;
  } while (b[0] === 0);
  return b;
}

/** Octets of the time prefix of {@link timeOrderedSerial}: milliseconds since the epoch, big-endian. */
const TIME_OCTETS = 6;
/** 2^40 ms (November 2004) … 2^47 ms (year 6429): the prefix's first octet is 0x01–0x7f. */
const TIME_MIN_MS = 2 ** 40;
const TIME_MAX_MS = 2 ** 47;

/**
 * A serial for a certificate the issuer records (issue #14): the issuing time in milliseconds in
 * the first 6 octets, then 10 random octets (80 bits of CSPRNG output; the CA/Browser Forum's
 * baseline asks for at least 64, RFC 5280 §4.1.2.2 for a positive INTEGER of at most 20 octets
 * and uniqueness per CA). 16 octets, first octet 0x01–0x7f: positive without a pad, the same
 * length as {@link randomSerial}, and the same canonical hex form (serialHex).
 *
 * Why the time first: the store's certificate table is keyed by the serial's hex. Random keys
 * put every new row's index entry on a random leaf page of that index — one more page (WAL frame)
 * written per renewal at COMMIT and again at checkpoint; keys that grow with time append to the
 * index's last page, which every renewal of a group shares. The serial's unpredictability, which
 * is what the random bits are for (a chosen-prefix collision needs a predictable serial), is the
 * 80 random bits; the time is already in the certificate (notBefore, back-dated by a minute).
 * Uniqueness: two serials of one millisecond collide with probability 2^-80 (and the store's
 * primary key refuses a duplicate rather than overwrite). A clock outside 2004–6429 (a test
 * clock) gets {@link randomSerial}.
 */
export function timeOrderedSerial(nowMs: number): Buffer {
  if (!(Number.isSafeInteger(nowMs) && nowMs >= TIME_MIN_MS && nowMs < TIME_MAX_MS)) return randomSerial();
  const b = Buffer.allocUnsafe(SERIAL_BYTES);
  b.writeUIntBE(nowMs, 0, TIME_OCTETS);
  if (poolOffset + SERIAL_BYTES - TIME_OCTETS > POOL_SIZE) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  poolOffset += pool.copy(b, TIME_OCTETS, poolOffset, poolOffset + SERIAL_BYTES - TIME_OCTETS);
  return b;
}

/**
 * Sigil's canonical text form of a serial, used in the store, audit log and CLI:
 * lowercase hex of the positive integer, two digits per octet, leading zero octets removed —
 * exactly `openssl x509 -noout -serial` lowercased (`serial=7A0F…`), so operators can grep
 * one with the other. Zero is "00". The input is read as an unsigned big-endian magnitude, so
 * both Sigil's serial Buffers and DER INTEGER content (whose 0x00 pad octet is dropped) work.
 */
export function serialHex(serial: Buffer): string {
  let start = 0;
  while (start < serial.length - 1 && serial[start] === 0) start++;
  const hex = serial.subarray(start).toString('hex');
  return hex.length === 0 ? '00' : hex;
}

/** Validate a serial before it goes into a certificate: positive, at most 20 octets encoded. */
export function checkSerial(serial: Buffer): void {
  if (!Buffer.isBuffer(serial) || serial.length === 0) throw new TypeError('serial must be a non-empty Buffer');
  let start = 0;
  while (start < serial.length && serial[start] === 0) start++;
  if (start === serial.length) throw new TypeError('serial must be positive (RFC 5280 §4.1.2.2)');
  const encodedLength = serial.length - start + ((serial[start]! & 0x80) !== 0 ? 1 : 0);
  if (encodedLength > 20) throw new TypeError(`serial encodes to ${encodedLength} octets; RFC 5280 §4.1.2.2 allows 20`);
}
