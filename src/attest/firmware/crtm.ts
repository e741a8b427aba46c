/**
 * The CRTM version a `crtm_versions` rule compares, as read from real event logs.
 *
 * PFP §10.4.1 says EV_S_CRTM_VERSION carries a NUL-terminated UCS-2 string, but firmware in the
 * field writes three shapes (measured on the go-attestation, tpm2-tools and keylime sample logs):
 *
 *   - a version string padded with blanks — a ThinkPad log has "N40ET41W " — so both the log's
 *     value and the profile's are compared trimmed (the profile value was always trimmed);
 *   - an empty string (a lone NUL, or nothing), in 5 of 26 real logs: it is "" and a profile can
 *     list "" to accept it;
 *   - a 16-byte EFI_GUID instead of text. Read as UTF-16 it is noise (eight CJK-range code units);
 *     it is shown the way tpm2_eventlog prints every GUID it decodes (guid_unparse_lower in
 *     tpm2-tools: Data1..Data3 little-endian, lowercase, 8-4-4-4-12), and a profile value in
 *     GUID form is compared case-insensitively.
 *
 * A 16-byte value is text when it reads as printable ASCII in UCS-2 (every high byte zero, NULs
 * only at the end): a 7-character version plus its NUL is also 16 bytes. Anything else that
 * long is a GUID: a random GUID whose every second byte is zero does not occur in practice.
 */
import { decodeCrtmVersion, formatGuid } from '../../tpm/eventlog/index.js';

const GUID_TEXT_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

function isAsciiUcs2(data: Buffer): boolean {
  let end = data.length;
  while (end >= 2 && data[end - 1] === 0 && data[end - 2] === 0) end -= 2;
  for (let i = 0; i < end; i += 2) {
    const lo = data[i]!;
    if (data[i + 1] !== 0 || lo < 0x20 || lo > 0x7e) return false;
  }
  return true;
}

/** The CRTM version of an EV_S_CRTM_VERSION event's data (see the file comment), trimmed. */
export function crtmVersionText(data: Buffer): string {
  if (data.length === 16 && !isAsciiUcs2(data)) return formatGuid(data);
  return decodeCrtmVersion(data).trim();
}

/** A profile's `crtm_versions` entry in the form {@link crtmVersionText} yields. */
export function normalizeCrtmVersion(value: string): string {
  const v = value.trim();
  return GUID_TEXT_RE.test(v) ? v.toLowerCase() : v;
}
