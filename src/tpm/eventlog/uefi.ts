/**
 * UEFI structures found in event data: EFI GUIDs, UEFI_VARIABLE_DATA (PFP §10.2.6),
 * UEFI_IMAGE_LOAD_EVENT (PFP §10.2.3) with its device path (UEFI spec §10.3), and
 * EFI_SIGNATURE_LIST / EFI_SIGNATURE_DATA (UEFI spec §32.4.1) for PK, KEK, db and dbx.
 */
import { eventLogError, LeReader, LeWriter } from './reader.js';

/** EFI_GLOBAL_VARIABLE: SecureBoot, PK, KEK, BootOrder, Boot####. */
export const EFI_GLOBAL_VARIABLE_GUID = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
/** EFI_IMAGE_SECURITY_DATABASE_GUID: db, dbx. */
export const EFI_IMAGE_SECURITY_DATABASE_GUID = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';
export const EFI_CERT_X509_GUID = 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072';
export const EFI_CERT_SHA256_GUID = 'c1c41626-504c-4092-aca9-41f936934328';

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** EFI_GUID is mixed-endian: Data1 (u32), Data2, Data3 (u16) little-endian, Data4 as bytes. */
export function formatGuid(b: Buffer): string {
  if (b.length !== 16) throw eventLogError(`a GUID is 16 bytes, got ${b.length}`);
  const hex = (x: Buffer): string => x.toString('hex');
  const le = (x: Buffer): string => hex(Buffer.from(x).reverse());
  return `${le(b.subarray(0, 4))}-${le(b.subarray(4, 6))}-${le(b.subarray(6, 8))}-${hex(b.subarray(8, 10))}-${hex(b.subarray(10, 16))}`;
}

export function guidBytes(guid: string): Buffer {
  const g = guid.toLowerCase();
  if (!GUID_RE.test(g)) throw new TypeError(`not a GUID: ${guid}`);
  const p = g.split('-') as [string, string, string, string, string];
  const le = (h: string): Buffer => Buffer.from(h, 'hex').reverse();
  return Buffer.concat([le(p[0]), le(p[1]), le(p[2]), Buffer.from(p[3] + p[4], 'hex')]);
}

/** UEFI_VARIABLE_DATA: a UEFI variable as measured (EV_EFI_VARIABLE_* events). */
export interface UefiVariable {
  /** VendorGuid of the variable, lowercase. */
  guid: string;
  name: string;
  data: Buffer;
}

export function decodeUefiVariable(data: Buffer): UefiVariable {
  const r = new LeReader(data, 'UEFI_VARIABLE_DATA');
  const guid = formatGuid(r.bytes(16, 'VariableName'));
  const nameLength = r.u64('UnicodeNameLength');
  const dataLength = r.u64('VariableDataLength');
  // Check before multiplying so a huge length cannot overflow into a small one.
  if (nameLength > r.remaining)
    throw eventLogError(`UEFI_VARIABLE_DATA: UnicodeNameLength ${nameLength} exceeds the event data`);
  const name = r.bytes(nameLength * 2, 'UnicodeName').toString('utf16le');
  const value = Buffer.from(r.bytes(dataLength, 'VariableData'));
  // Trailing bytes are tolerated (some firmware pads); the digest covers them either way.
  return { guid, name, data: value };
}

export function encodeUefiVariable(v: UefiVariable): Buffer {
  const name = Buffer.from(v.name, 'utf16le');
  return new LeWriter()
    .bytes(guidBytes(v.guid))
    .u64(v.name.length)
    .u64(v.data.length)
    .bytes(name)
    .bytes(v.data)
    .toBuffer();
}

/** The `SecureBoot` variable in EFI_GLOBAL_VARIABLE: one byte, 1 = enabled (UEFI spec §3.3). */
export function isSecureBootVariable(v: UefiVariable): boolean {
  return v.guid === EFI_GLOBAL_VARIABLE_GUID && v.name === 'SecureBoot';
}

export function secureBootEnabled(v: UefiVariable): boolean {
  return v.data.length > 0 && v.data[0] === 1;
}

/** UEFI_IMAGE_LOAD_EVENT. The image's Authenticode digest is the event *digest*, not in here. */
export interface ImageLoadEvent {
  imageLocationInMemory: number;
  imageLengthInMemory: number;
  imageLinkTimeAddress: number;
  devicePath: Buffer;
  /** The file path node(s) of the device path, e.g. `\EFI\BOOT\BOOTX64.EFI`, if any. */
  filePath: string | undefined;
}

export function decodeImageLoadEvent(data: Buffer): ImageLoadEvent {
  const r = new LeReader(data, 'UEFI_IMAGE_LOAD_EVENT');
  const imageLocationInMemory = r.u64('ImageLocationInMemory');
  const imageLengthInMemory = r.u64('ImageLengthInMemory');
  const imageLinkTimeAddress = r.u64('ImageLinkTimeAddress');
  const dpLength = r.u64('LengthOfDevicePath');
  const devicePath = Buffer.from(r.bytes(dpLength, 'DevicePath'));
  return {
    imageLocationInMemory,
    imageLengthInMemory,
    imageLinkTimeAddress,
    devicePath,
    filePath: devicePathFile(devicePath),
  };
}

export function encodeImageLoadEvent(e: Omit<ImageLoadEvent, 'filePath'>): Buffer {
  return new LeWriter()
    .u64(e.imageLocationInMemory)
    .u64(e.imageLengthInMemory)
    .u64(e.imageLinkTimeAddress)
    .u64(e.devicePath.length)
    .bytes(e.devicePath)
    .toBuffer();
}

const DP_MEDIA = 0x04;
const DP_MEDIA_FILE_PATH = 0x04;
const DP_END = 0x7f;

/** The concatenated Media/File Path nodes of a device path; undefined when there are none or it is malformed. */
function devicePathFile(dp: Buffer): string | undefined {
  let off = 0;
  const parts: string[] = [];
  while (off + 4 <= dp.length) {
    const type = dp[off]!;
    const subType = dp[off + 1]!;
    const len = dp.readUInt16LE(off + 2);
    if (len < 4 || off + len > dp.length) return undefined;
    if (type === DP_END) break;
    if (type === DP_MEDIA && subType === DP_MEDIA_FILE_PATH && len % 2 === 0) {
      parts.push(
        dp
          .subarray(off + 4, off + len)
          .toString('utf16le')
          .replace(/\0+$/, ''),
      );
    }
    off += len;
  }
  return parts.length ? parts.join('') : undefined;
}

/** A device path of one Media/File Path node and the End node, e.g. for `\EFI\BOOT\BOOTX64.EFI`. */
export function encodeFilePathDevicePath(path: string): Buffer {
  const name = Buffer.from(`${path}\0`, 'utf16le');
  const node = new LeWriter()
    .u8(DP_MEDIA)
    .u8(DP_MEDIA_FILE_PATH)
    .u16(4 + name.length)
    .bytes(name)
    .toBuffer();
  const end = Buffer.from([DP_END, 0xff, 0x04, 0x00]);
  return Buffer.concat([node, end]);
}

/** One EFI_SIGNATURE_DATA: the owner GUID and the certificate or hash. */
export interface SignatureData {
  owner: string;
  data: Buffer;
}

export function encodeSignatureData(s: SignatureData): Buffer {
  return Buffer.concat([guidBytes(s.owner), s.data]);
}

/** EFI_SIGNATURE_LIST of one type; all entries of a list have the same size (UEFI §32.4.1). */
export function encodeSignatureList(type: string, entries: SignatureData[]): Buffer {
  if (entries.length === 0) throw new TypeError('a signature list needs at least one entry');
  const size = 16 + entries[0]!.data.length;
  if (entries.some((e) => 16 + e.data.length !== size))
    throw new TypeError('all entries of a signature list must have the same size');
  const body = Buffer.concat(entries.map(encodeSignatureData));
  return new LeWriter()
    .bytes(guidBytes(type))
    .u32(28 + body.length) // SignatureListSize: 16 (type) + 3 × u32 + header (0) + entries
    .u32(0) // SignatureHeaderSize
    .u32(size)
    .bytes(body)
    .toBuffer();
}
