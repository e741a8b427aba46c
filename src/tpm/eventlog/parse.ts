/**
 * Parse a TCG PC Client crypto-agile event log (what Linux exposes as
 * /sys/kernel/security/tpm0/binary_bios_measurements).
 *
 * Layout (PFP §10.2.1, §10.2.2, §10.4.5.1):
 *
 *   TCG_PCR_EVENT       pcrIndex u32 | eventType u32 | digest[20] | eventSize u32 | event
 *                       — always SHA-1 format; in a crypto-agile log it is EV_NO_ACTION on PCR 0
 *                         with a zero digest and carries TCG_EfiSpecIDEvent "Spec ID Event03",
 *                         which lists each bank's algorithm id and digest size.
 *   TCG_PCR_EVENT2 …    pcrIndex u32 | eventType u32 | TPML_DIGEST_VALUES (count u32,
 *                       count × (hashAlg u16 | digest[size from the Spec ID event])) |
 *                       eventSize u32 | event
 *
 * Everything is little-endian. Sizes are checked against what is left and against
 * {@link EventLogLimits} before anything is read, so a hostile log cannot make us allocate
 * more than its own length.
 */
import { eventLogError, LeReader } from './reader.js';
import {
  DEFAULT_EVENTLOG_LIMITS,
  EV,
  eventTypeName,
  HASH_ALGS,
  hashAlgById,
  PCR_COUNT,
  type DigestAlgKey,
  type EventLogLimits,
  type ParsedLog,
  type SpecIdEvent,
  type TcgEvent,
} from './types.js';

/** "Spec ID Event03\0" (PFP §10.4.5.1). */
export const SPEC_ID_SIGNATURE = Buffer.from('Spec ID Event03\0', 'latin1');
/** TPM 1.2-era logs start with "Spec ID Event00" (SHA-1 only, no crypto-agile records). */
const LEGACY_SPEC_ID_PREFIX = Buffer.from('Spec ID Event00', 'latin1');
const MAX_DIGEST_SIZE = 64;

export function algKey(algId: number): DigestAlgKey {
  return hashAlgById(algId) ?? `0x${algId.toString(16).padStart(4, '0')}`;
}

export function parseEventLog(input: Uint8Array, limits: Partial<EventLogLimits> = {}): ParsedLog {
  const lim: EventLogLimits = { ...DEFAULT_EVENTLOG_LIMITS, ...limits };
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length === 0) throw eventLogError('the log is empty');
  if (buf.length > lim.maxLogBytes)
    throw eventLogError(`the log is ${buf.length} bytes, over the ${lim.maxLogBytes}-byte limit`);

  const { specId, next } = parseHeader(buf, lim);
  const events: TcgEvent[] = [];
  // Logs copied out of the ACPI log area carry zero padding up to its length; an all-zero tail
  // is not events (an all-zero record would be EV_PREBOOT_CERT with no digests anyway).
  let end = buf.length;
  while (end > next && buf[end - 1] === 0) end--;
  let offset = next;
  while (offset < end) {
    if (events.length >= lim.maxEvents) throw eventLogError(`more than ${lim.maxEvents} events`);
    const ev = parseEvent2(buf, offset, events.length + 1, specId, lim);
    events.push(ev.event);
    offset = ev.next;
  }
  return { specId, events };
}

function parseHeader(buf: Buffer, lim: EventLogLimits): { specId: SpecIdEvent; next: number } {
  const r = new LeReader(buf, 'Spec ID event (offset 0)');
  const pcr = r.u32('pcrIndex');
  const type = r.u32('eventType');
  const digest = r.bytes(20, 'SHA-1 digest');
  const size = r.u32('eventSize');
  const looksLegacy =
    size >= 16 && r.remaining >= 15 && buf.subarray(r.offset, r.offset + 15).equals(LEGACY_SPEC_ID_PREFIX);
  if (
    type !== EV.EV_NO_ACTION ||
    looksLegacy ||
    size < 16 ||
    r.remaining < 16 ||
    !buf.subarray(r.offset, r.offset + 16).equals(SPEC_ID_SIGNATURE)
  ) {
    throw eventLogError(
      `not a crypto-agile log: the first event must be EV_NO_ACTION carrying "Spec ID Event03" (got ${eventTypeName(type)}); ` +
        'SHA-1-only (TPM 1.2 format) logs are not supported',
    );
  }
  if (pcr !== 0) throw eventLogError(`Spec ID event: pcrIndex must be 0, got ${pcr}`);
  if (!isAllZero(digest)) throw eventLogError('Spec ID event: the digest must be all zeros');
  if (size > lim.maxEventDataBytes)
    throw eventLogError(`Spec ID event: eventSize ${size} is over the ${lim.maxEventDataBytes}-byte limit`);
  const dataOffset = r.offset;
  const data = r.bytes(size, 'Spec ID event data');

  const s = new LeReader(data, 'Spec ID event', dataOffset);
  s.bytes(16, 'signature');
  const platformClass = s.u32('platformClass');
  const specVersionMinor = s.u8('specVersionMinor');
  const specVersionMajor = s.u8('specVersionMajor');
  const specErrata = s.u8('specErrata');
  const uintnSize = s.u8('uintnSize');
  if (specVersionMajor !== 2) throw eventLogError(`Spec ID event: specVersionMajor must be 2, got ${specVersionMajor}`);
  if (uintnSize !== 1 && uintnSize !== 2)
    throw eventLogError(`Spec ID event: uintnSize must be 1 or 2, got ${uintnSize}`);
  const count = s.u32('numberOfAlgorithms');
  if (count === 0) throw eventLogError('Spec ID event: numberOfAlgorithms is 0');
  if (count > lim.maxAlgorithms)
    throw eventLogError(`Spec ID event: numberOfAlgorithms ${count} is over the limit of ${lim.maxAlgorithms}`);
  const algorithms: SpecIdEvent['algorithms'] = [];
  for (let i = 0; i < count; i++) {
    const algId = s.u16(`digestSizes[${i}].algorithmId`);
    const digestSize = s.u16(`digestSizes[${i}].digestSize`);
    const name = hashAlgById(algId);
    if (name !== undefined && HASH_ALGS[name].size !== digestSize) {
      throw eventLogError(
        `Spec ID event: ${name} digests are ${HASH_ALGS[name].size} bytes, the log declares ${digestSize}`,
      );
    }
    if (digestSize === 0 || digestSize > MAX_DIGEST_SIZE)
      throw eventLogError(`Spec ID event: digest size ${digestSize} for algorithm ${algKey(algId)} is not plausible`);
    if (algorithms.some((a) => a.algId === algId))
      throw eventLogError(`Spec ID event: algorithm ${algKey(algId)} is listed twice`);
    algorithms.push({ algId, name, digestSize });
  }
  const vendorInfoSize = s.u8('vendorInfoSize');
  const vendorInfo = Buffer.from(s.bytes(vendorInfoSize, 'vendorInfo'));
  if (s.remaining !== 0)
    throw eventLogError(`Spec ID event: ${s.remaining} unexpected bytes after vendorInfo (eventSize ${size})`);

  return {
    specId: { platformClass, specVersionMinor, specVersionMajor, specErrata, uintnSize, algorithms, vendorInfo },
    next: r.offset,
  };
}

function parseEvent2(
  buf: Buffer,
  offset: number,
  index: number,
  specId: SpecIdEvent,
  lim: EventLogLimits,
): { event: TcgEvent; next: number } {
  const r = new LeReader(buf.subarray(offset), `event ${index} (offset ${offset})`, offset);
  const pcr = r.u32('pcrIndex');
  const type = r.u32('eventType');
  const typeName = eventTypeName(type);
  r.what = `event ${index} (${typeName}, offset ${offset})`;
  if (pcr >= PCR_COUNT) throw eventLogError(`${r.what}: PCR index ${pcr} is out of range (0-${PCR_COUNT - 1})`);
  const count = r.u32('digests.count');
  if (count > specId.algorithms.length) {
    throw eventLogError(
      `${r.what}: ${count} digests, but the Spec ID event declares ${specId.algorithms.length} algorithm${specId.algorithms.length === 1 ? '' : 's'}`,
    );
  }
  const digests = new Map<DigestAlgKey, Buffer>();
  for (let i = 0; i < count; i++) {
    const algId = r.u16(`digests[${i}].hashAlg`);
    const alg = specId.algorithms.find((a) => a.algId === algId);
    if (!alg) throw eventLogError(`${r.what}: digest algorithm ${algKey(algId)} is not declared in the Spec ID event`);
    const key = algKey(algId);
    if (digests.has(key)) throw eventLogError(`${r.what}: two ${key} digests`);
    digests.set(key, Buffer.from(r.bytes(alg.digestSize, `${key} digest`)));
  }
  const size = r.u32('eventSize');
  if (size > lim.maxEventDataBytes)
    throw eventLogError(`${r.what}: eventSize ${size} is over the ${lim.maxEventDataBytes}-byte limit`);
  const data = Buffer.from(r.bytes(size, 'event data'));
  return { event: { index, offset, pcr, type, typeName, digests, data }, next: offset + r.offset };
}

function isAllZero(buf: Buffer): boolean {
  for (const b of buf) if (b !== 0) return false;
  return true;
}
