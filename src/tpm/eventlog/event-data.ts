/**
 * Decoders (and, for the log writer and the swtpm harness, encoders) of the event data that
 * firmware profiles look at. UEFI structures (variables, image loads, device paths, signature
 * lists) live in ./uefi.ts.
 *
 * Event data is *not* protected by the PCRs by itself: only the digest is extended. Whether a
 * decoded value can be trusted depends on how the event's digest relates to its data — see
 * ./facts.ts, which checks that binding before a policy looks at a decoded value.
 */
import { eventLogError, LeReader, LeWriter } from './reader.js';

/** "StartupLocality\0" (PFP §10.4.5.3, TCG_EfiStartupLocalityEvent). */
const STARTUP_LOCALITY_SIGNATURE = Buffer.from('StartupLocality\0', 'latin1');

/**
 * The locality of a StartupLocality EV_NO_ACTION event, or undefined when `data` is some other
 * EV_NO_ACTION payload.
 */
export function decodeStartupLocality(data: Buffer): number | undefined {
  if (data.length < STARTUP_LOCALITY_SIGNATURE.length || !data.subarray(0, 16).equals(STARTUP_LOCALITY_SIGNATURE))
    return undefined;
  if (data.length !== 17) throw eventLogError(`StartupLocality event data is ${data.length} bytes, expected 17`);
  const locality = data[16]!;
  if (locality !== 0 && locality !== 3 && locality !== 4)
    throw eventLogError(`StartupLocality ${locality} is not 0, 3 or 4`);
  return locality;
}

export function encodeStartupLocality(locality: 0 | 3 | 4): Buffer {
  return Buffer.concat([STARTUP_LOCALITY_SIGNATURE, Buffer.from([locality])]);
}

/**
 * EV_S_CRTM_VERSION (PFP §10.4.1): the CRTM version as a NUL-terminated UCS-2 string; the
 * digest is the hash of the event data. Trailing NULs are dropped.
 */
export function decodeCrtmVersion(data: Buffer): string {
  if (data.length % 2 !== 0) throw eventLogError(`EV_S_CRTM_VERSION data is ${data.length} bytes, not a UTF-16 string`);
  return data.toString('utf16le').replace(/\0+$/, '');
}

export function encodeCrtmVersion(version: string): Buffer {
  return Buffer.from(`${version}\0`, 'utf16le');
}

/**
 * EV_SEPARATOR (PFP §10.4.1): four bytes, 0x00000000 normally, 0x00000001 when firmware hit an
 * error before the separator; legacy BIOS logs (e.g. SeaBIOS) use 0xFFFFFFFF.
 */
export function decodeSeparator(data: Buffer): { value: number; error: boolean } {
  if (data.length !== 4) throw eventLogError(`EV_SEPARATOR data is ${data.length} bytes, expected 4`);
  const value = data.readUInt32LE(0);
  return { value, error: value === 1 };
}

export const SEPARATOR_DATA: Readonly<Buffer> = Buffer.alloc(4);

/**
 * EV_IPL, EV_EFI_ACTION, EV_ACTION and string EV_POST_CODE payloads: text whose encoding is not
 * declared. GRUB and shim write UTF-8/ASCII with a trailing NUL, systemd-boot writes UTF-16LE.
 * We call it UTF-16LE when it has an even length and every odd byte is zero.
 */
export function decodeEventString(data: Buffer): { text: string; encoding: 'utf8' | 'utf16le' } {
  let utf16 = data.length >= 2 && data.length % 2 === 0;
  for (let i = 1; utf16 && i < data.length; i += 2) if (data[i] !== 0) utf16 = false;
  if (utf16) return { text: data.toString('utf16le').replace(/\0+$/, ''), encoding: 'utf16le' };
  return { text: data.toString('utf8').replace(/\0+$/, ''), encoding: 'utf8' };
}

/** UEFI_PLATFORM_FIRMWARE_BLOB (PFP §10.2.5): where a measured firmware volume sits in memory. */
export interface FirmwareBlob {
  base: number;
  length: number;
}

export function decodeFirmwareBlob(data: Buffer): FirmwareBlob {
  if (data.length !== 16) throw eventLogError(`UEFI_PLATFORM_FIRMWARE_BLOB is ${data.length} bytes, expected 16`);
  const r = new LeReader(data, 'UEFI_PLATFORM_FIRMWARE_BLOB');
  return { base: r.u64('BlobBase'), length: r.u64('BlobLength') };
}

export function encodeFirmwareBlob(blob: FirmwareBlob): Buffer {
  return new LeWriter().u64(blob.base).u64(blob.length).toBuffer();
}
