/**
 * Replay an event log: recompute the PCR values the logged extends must have produced.
 * PCR_Extend is `PCR := H(PCR || digest)` (TPM 2.0 Part 1 §17.2); PCRs start at zero except
 * PCR 0, whose reset value carries the startup locality (Part 1 §17.4, PFP §10.4.5.3):
 *   - an EV_NO_ACTION "StartupLocality" event on PCR 0 gives the locality (0, 3 or 4) that
 *     TPM2_Startup ran at; PCR 0 then starts as 0…0<locality>;
 *   - an EV_EFI_HCRTM_EVENT on PCR 0 means an H-CRTM measured from locality 4: PCR 0 starts
 *     as 0…04 and the event's digest is the first extend.
 * EV_NO_ACTION events are informational and never extended (PFP §10.4.5).
 */
import { createHash } from 'node:crypto';
import { eventLogError } from './reader.js';
import { decodeStartupLocality } from './event-data.js';
import { EV, HASH_ALGS, type ParsedLog, type PcrBank } from './types.js';

export function hashBytes(bank: PcrBank, ...parts: Uint8Array[]): Buffer {
  const h = createHash(bank);
  for (const p of parts) h.update(p);
  return h.digest();
}

export function extendPcr(bank: PcrBank, pcr: Uint8Array, digest: Uint8Array): Buffer {
  return hashBytes(bank, pcr, digest);
}

/**
 * The PCR values `log` replays to in `bank`, for every PCR the log touches (extends, or sets
 * the startup locality of). PCRs the log never mentions are absent (they are still at reset).
 * Throws `bad_request` when the log has no digests for `bank` or misses one on some event.
 */
export function replayEventLog(log: ParsedLog, bank: PcrBank): Map<number, Buffer> {
  if (!log.specId.algorithms.some((a) => a.name === bank)) {
    const have = log.specId.algorithms.map((a) => a.name ?? `0x${a.algId.toString(16)}`).join(', ');
    throw eventLogError(`the log has no ${bank} digests (its Spec ID event declares ${have})`);
  }
  const size = HASH_ALGS[bank].size;
  const pcrs = new Map<number, Buffer>();
  let pcr0Extended = false;

  const setPcr0Locality = (locality: number, what: string): void => {
    if (pcr0Extended) throw eventLogError(`${what} comes after PCR 0 was already extended`);
    const init = Buffer.alloc(size);
    init[size - 1] = locality;
    pcrs.set(0, init);
  };

  for (const ev of log.events) {
    if (ev.type === EV.EV_NO_ACTION) {
      if (ev.pcr === 0) {
        const locality = decodeStartupLocality(ev.data);
        if (locality !== undefined) setPcr0Locality(locality, `event ${ev.index} (StartupLocality)`);
      }
      continue;
    }
    if (ev.type === EV.EV_EFI_HCRTM_EVENT && ev.pcr === 0) setPcr0Locality(4, `event ${ev.index} (EV_EFI_HCRTM_EVENT)`);
    const digest = ev.digests.get(bank);
    if (!digest) throw eventLogError(`event ${ev.index} (${ev.typeName}, PCR ${ev.pcr}) has no ${bank} digest`);
    const current = pcrs.get(ev.pcr) ?? Buffer.alloc(size);
    pcrs.set(ev.pcr, extendPcr(bank, current, digest));
    if (ev.pcr === 0) pcr0Extended = true;
  }
  return pcrs;
}
