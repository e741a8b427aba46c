/**
 * Boot facts a firmware profile can rule on, read from a parsed log — but only from events
 * whose *data is bound to their digest*. Replaying the log against quoted PCRs proves the
 * digests; the data beside a digest is unprotected, so a decoded value is trusted only when
 * the digest is recomputed from it:
 *
 *   - SecureBoot (PCR 7, EV_EFI_VARIABLE_DRIVER_CONFIG): digest = H(UEFI_VARIABLE_DATA) (PFP §10.4.4);
 *   - CRTM version (PCR 0, EV_S_CRTM_VERSION): digest = H(event data);
 *   - kernel command line, GRUB convention (PCR 8, EV_IPL "kernel_cmdline: …\0"): digest = H(text
 *     after the prefix), with or without the trailing NUL (tpm2-tools accepts both, so do we);
 *   - kernel command line, systemd-boot convention (PCR 12, EV_IPL, UTF-16LE): digest = H(event data);
 *   - boot applications (PCR 4, EV_EFI_BOOT_SERVICES_APPLICATION): the digest *is* the fact (the
 *     image's Authenticode hash); the device path beside it is informational only.
 *
 * A mismatch is reported, never skipped: a log whose data disagrees with its digests is lying.
 */
import { SigilError } from '../../errors.js';
import { decodeCrtmVersion, decodeEventString } from './event-data.js';
import { hashBytes } from './replay.js';
import { decodeImageLoadEvent, decodeUefiVariable, isSecureBootVariable, secureBootEnabled } from './uefi.js';
import { EV, type ParsedLog, type PcrBank, type TcgEvent } from './types.js';

export interface BootFacts {
  /** From the SecureBoot variable measured into PCR 7; undefined when the log has none. */
  secureBoot: { enabled: boolean; event: number } | undefined;
  /** PCR 4 boot applications (boot loader, shim, grub, a UKI…) in log order, digests in the bank. */
  bootApplications: Array<{ event: number; digest: string; path: string | undefined }>;
  kernelCmdlines: Array<{ event: number; pcr: number; text: string }>;
  crtmVersions: Array<{ event: number; text: string }>;
}

export type BootFactsResult =
  { ok: true; facts: BootFacts } | { ok: false; event: TcgEvent; message: string; expected?: string; got?: string };

const GRUB_CMDLINE_PREFIX = 'kernel_cmdline: ';

class FactError extends Error {
  constructor(
    message: string,
    readonly expected?: string,
    readonly got?: string,
  ) {
    super(message);
  }
}

function bankDigest(ev: TcgEvent, bank: PcrBank): Buffer {
  const d = ev.digests.get(bank);
  if (!d) throw new FactError(`has no ${bank} digest`);
  return d;
}

function requireBinding(ev: TcgEvent, bank: PcrBank, candidates: Buffer[]): void {
  const got = bankDigest(ev, bank);
  const hashes = candidates.map((c) => hashBytes(bank, c));
  if (!hashes.some((h) => h.equals(got))) {
    throw new FactError(
      `its ${bank} digest is not the hash of its data`,
      hashes[0]!.toString('hex'),
      got.toString('hex'),
    );
  }
}

export function extractBootFacts(log: ParsedLog, bank: PcrBank): BootFactsResult {
  const facts: BootFacts = { secureBoot: undefined, bootApplications: [], kernelCmdlines: [], crtmVersions: [] };
  for (const ev of log.events) {
    try {
      collect(ev, bank, facts);
    } catch (e) {
      if (e instanceof FactError) {
        const r: BootFactsResult = {
          ok: false,
          event: ev,
          message: `event ${ev.index} (${ev.typeName}, PCR ${ev.pcr}): ${e.message}`,
        };
        if (e.expected !== undefined) r.expected = e.expected;
        if (e.got !== undefined) r.got = e.got;
        return r;
      }
      if (e instanceof SigilError)
        return { ok: false, event: ev, message: `event ${ev.index} (${ev.typeName}, PCR ${ev.pcr}): ${e.message}` };
      throw e;
    }
  }
  return { ok: true, facts };
}

function collect(ev: TcgEvent, bank: PcrBank, facts: BootFacts): void {
  if (ev.pcr === 7 && ev.type === EV.EV_EFI_VARIABLE_DRIVER_CONFIG) {
    const v = decodeUefiVariable(ev.data);
    if (!isSecureBootVariable(v)) return;
    requireBinding(ev, bank, [ev.data]);
    const enabled = secureBootEnabled(v);
    if (facts.secureBoot && facts.secureBoot.enabled !== enabled) {
      throw new FactError(
        `SecureBoot is measured again with a different value (event ${facts.secureBoot.event} said ${facts.secureBoot.enabled ? 'enabled' : 'disabled'})`,
      );
    }
    facts.secureBoot = { enabled, event: ev.index };
    return;
  }
  if (ev.pcr === 0 && ev.type === EV.EV_S_CRTM_VERSION) {
    requireBinding(ev, bank, [ev.data]);
    facts.crtmVersions.push({ event: ev.index, text: decodeCrtmVersion(ev.data) });
    return;
  }
  if (ev.pcr === 4 && ev.type === EV.EV_EFI_BOOT_SERVICES_APPLICATION) {
    let path: string | undefined;
    try {
      path = decodeImageLoadEvent(ev.data).filePath;
    } catch {
      path = undefined; // informational only; the digest is what counts
    }
    facts.bootApplications.push({ event: ev.index, digest: bankDigest(ev, bank).toString('hex'), path });
    return;
  }
  if (ev.type !== EV.EV_IPL) return;
  if (ev.pcr === 8) {
    const { text, encoding } = decodeEventString(ev.data);
    if (encoding !== 'utf8' || !text.startsWith(GRUB_CMDLINE_PREFIX)) return;
    const after = ev.data.subarray(Buffer.byteLength(GRUB_CMDLINE_PREFIX));
    const withoutNul = after[after.length - 1] === 0 ? after.subarray(0, after.length - 1) : after;
    requireBinding(ev, bank, [withoutNul, after]);
    facts.kernelCmdlines.push({ event: ev.index, pcr: 8, text: text.slice(GRUB_CMDLINE_PREFIX.length) });
  } else if (ev.pcr === 12) {
    const { text, encoding } = decodeEventString(ev.data);
    if (encoding !== 'utf16le') return;
    requireBinding(ev, bank, [ev.data]);
    facts.kernelCmdlines.push({ event: ev.index, pcr: 12, text: text.trim() });
  }
}
