/**
 * Write a crypto-agile event log (the inverse of ./parse.ts). Sigil itself never *needs* to
 * write one — firmware does — but the swtpm harness simulates a boot with it, and tests build
 * precise logs (good and hostile) with it.
 */
import { LeWriter } from './reader.js';
import { hashBytes } from './replay.js';
import { SPEC_ID_SIGNATURE } from './parse.js';
import { EV, HASH_ALGS, type EventTypeName, type PcrBank } from './types.js';

export interface EventToWrite {
  pcr: number;
  type: EventTypeName | number;
  data: Uint8Array;
  /**
   * What was measured: each bank's digest is the hash of these bytes. Defaults to `data`, which
   * is right for the events whose digest covers their own data (EV_SEPARATOR, EV_S_CRTM_VERSION,
   * EV_EFI_VARIABLE_*, EV_EFI_ACTION); a boot application's digest covers the image instead.
   */
  measured?: Uint8Array;
  /** Explicit digests per bank (wins over `measured`); e.g. to write a log that lies. */
  digests?: Partial<Record<PcrBank, Uint8Array>>;
}

export interface WriteOptions {
  platformClass?: number;
  /** Default 2 (UINTN is 64 bits), like x86-64 UEFI. */
  uintnSize?: 1 | 2;
  vendorInfo?: Uint8Array;
}

export function eventTypeValue(type: EventTypeName | number): number {
  return typeof type === 'number' ? type : EV[type];
}

/**
 * The digest each bank records for `ev`: zeros for EV_NO_ACTION (PFP §10.4.5), otherwise the
 * explicit digest or the hash of what was measured.
 */
export function eventDigest(ev: EventToWrite, bank: PcrBank): Buffer {
  if (eventTypeValue(ev.type) === EV.EV_NO_ACTION) return Buffer.alloc(HASH_ALGS[bank].size);
  const explicit = ev.digests?.[bank];
  if (explicit) {
    if (explicit.length !== HASH_ALGS[bank].size)
      throw new TypeError(`${bank} digest must be ${HASH_ALGS[bank].size} bytes, got ${explicit.length}`);
    return Buffer.from(explicit);
  }
  return hashBytes(bank, ev.measured ?? ev.data);
}

export function writeEventLog(
  events: readonly EventToWrite[],
  banks: readonly PcrBank[],
  opts: WriteOptions = {},
): Buffer {
  if (banks.length === 0) throw new TypeError('writeEventLog needs at least one bank');
  if (new Set(banks).size !== banks.length) throw new TypeError('writeEventLog: a bank is listed twice');
  const w = new LeWriter();

  // TCG_EfiSpecIDEvent inside a SHA-1-format TCG_PCR_EVENT (PFP §10.4.5.1).
  const vendorInfo = Buffer.from(opts.vendorInfo ?? []);
  if (vendorInfo.length > 255) throw new TypeError('vendorInfo is at most 255 bytes');
  const spec = new LeWriter()
    .bytes(SPEC_ID_SIGNATURE)
    .u32(opts.platformClass ?? 0)
    .u8(0) // specVersionMinor
    .u8(2) // specVersionMajor
    .u8(0) // specErrata
    .u8(opts.uintnSize ?? 2)
    .u32(banks.length);
  for (const bank of banks) spec.u16(HASH_ALGS[bank].id).u16(HASH_ALGS[bank].size);
  spec.u8(vendorInfo.length).bytes(vendorInfo);
  const specData = spec.toBuffer();
  w.u32(0).u32(EV.EV_NO_ACTION).bytes(Buffer.alloc(20)).u32(specData.length).bytes(specData);

  for (const ev of events) {
    if (!Number.isInteger(ev.pcr) || ev.pcr < 0 || ev.pcr > 23)
      throw new TypeError(`PCR index ${ev.pcr} is out of range`);
    w.u32(ev.pcr).u32(eventTypeValue(ev.type)).u32(banks.length);
    for (const bank of banks) w.u16(HASH_ALGS[bank].id).bytes(eventDigest(ev, bank));
    w.u32(ev.data.length).bytes(ev.data);
  }
  return w.toBuffer();
}
