/**
 * Types and constants of the TCG PC Client crypto-agile event log
 * (TCG PC Client Platform Firmware Profile Specification, "PFP", §10: event log format;
 * §10.4.1 event types). The log is what firmware measured into the PCRs, one record per
 * extend; a verifier replays it and compares the result with the PCR values a TPM quote signed.
 *
 * Unlike TPM 2.0 command structures (big-endian), every integer in the log is little-endian.
 */

/** Hash algorithms a PCR bank can use (TPM 2.0 Part 2 §6.3 TPM_ALG_ID). */
export const HASH_ALGS = {
  sha1: { id: 0x0004, size: 20 },
  sha256: { id: 0x000b, size: 32 },
  sha384: { id: 0x000c, size: 48 },
  sha512: { id: 0x000d, size: 64 },
  sm3_256: { id: 0x0012, size: 32 },
} as const;

export type HashAlgName = keyof typeof HASH_ALGS;

/** The PCR banks this module can replay (node:crypto has these hashes everywhere). */
export const PCR_BANKS = ['sha1', 'sha256', 'sha384', 'sha512'] as const;
export type PcrBank = (typeof PCR_BANKS)[number];

/** An algorithm the Spec ID event declares but Sigil does not know, keyed by its id, e.g. `0x0027`. */
export type UnknownAlgKey = `0x${string}`;
export type DigestAlgKey = HashAlgName | UnknownAlgKey;

/** HASH_ALGS as [id, name] pairs, built once: looked up per quoted bank and per PCR digest check. */
const HASH_ALG_IDS: ReadonlyArray<readonly [number, HashAlgName]> = Object.freeze(
  (Object.keys(HASH_ALGS) as HashAlgName[]).map((name) => [HASH_ALGS[name].id, name] as const),
);

export function hashAlgById(id: number): HashAlgName | undefined {
  for (const [algId, name] of HASH_ALG_IDS) if (algId === id) return name;
  return undefined;
}

export function isPcrBank(x: unknown): x is PcrBank {
  return typeof x === 'string' && (PCR_BANKS as readonly string[]).includes(x);
}

/** Event types, PFP §10.4.1 Table 9 (the EV_EFI_* ones are defined there for UEFI platforms). */
export const EV = {
  EV_PREBOOT_CERT: 0x00000000,
  EV_POST_CODE: 0x00000001,
  EV_UNUSED: 0x00000002,
  EV_NO_ACTION: 0x00000003,
  EV_SEPARATOR: 0x00000004,
  EV_ACTION: 0x00000005,
  EV_EVENT_TAG: 0x00000006,
  EV_S_CRTM_CONTENTS: 0x00000007,
  EV_S_CRTM_VERSION: 0x00000008,
  EV_CPU_MICROCODE: 0x00000009,
  EV_PLATFORM_CONFIG_FLAGS: 0x0000000a,
  EV_TABLE_OF_DEVICES: 0x0000000b,
  EV_COMPACT_HASH: 0x0000000c,
  EV_IPL: 0x0000000d,
  EV_IPL_PARTITION_DATA: 0x0000000e,
  EV_NONHOST_CODE: 0x0000000f,
  EV_NONHOST_CONFIG: 0x00000010,
  EV_NONHOST_INFO: 0x00000011,
  EV_OMIT_BOOT_DEVICE_EVENTS: 0x00000012,
  EV_POST_CODE2: 0x00000013,
  EV_EFI_EVENT_BASE: 0x80000000,
  EV_EFI_VARIABLE_DRIVER_CONFIG: 0x80000001,
  EV_EFI_VARIABLE_BOOT: 0x80000002,
  EV_EFI_BOOT_SERVICES_APPLICATION: 0x80000003,
  EV_EFI_BOOT_SERVICES_DRIVER: 0x80000004,
  EV_EFI_RUNTIME_SERVICES_DRIVER: 0x80000005,
  EV_EFI_GPT_EVENT: 0x80000006,
  EV_EFI_ACTION: 0x80000007,
  EV_EFI_PLATFORM_FIRMWARE_BLOB: 0x80000008,
  EV_EFI_HANDOFF_TABLES: 0x80000009,
  EV_EFI_PLATFORM_FIRMWARE_BLOB2: 0x8000000a,
  EV_EFI_HANDOFF_TABLES2: 0x8000000b,
  EV_EFI_VARIABLE_BOOT2: 0x8000000c,
  EV_EFI_GPT_EVENT2: 0x8000000d,
  EV_EFI_HCRTM_EVENT: 0x80000010,
  EV_EFI_VARIABLE_AUTHORITY: 0x800000e0,
  EV_EFI_SPDM_FIRMWARE_BLOB: 0x800000e1,
  EV_EFI_SPDM_FIRMWARE_CONFIG: 0x800000e2,
} as const;

export type EventTypeName = keyof typeof EV;

const EV_NAMES = new Map<number, EventTypeName>(Object.entries(EV).map(([name, v]) => [v, name as EventTypeName]));

/** `EV_SEPARATOR` for 4; `EV_UNKNOWN_0x0000abcd` for a type the spec table does not list. */
export function eventTypeName(type: number): string {
  return EV_NAMES.get(type) ?? `EV_UNKNOWN_0x${type.toString(16).padStart(8, '0')}`;
}

/** TCG_EfiSpecIDEvent (PFP §10.4.5.1), the payload of the log's first, SHA-1-format record. */
export interface SpecIdEvent {
  platformClass: number;
  specVersionMinor: number;
  specVersionMajor: number;
  specErrata: number;
  /** 1 = UINT32, 2 = UINT64 (size of UINTN in the firmware that wrote the log). */
  uintnSize: number;
  /** Banks the log carries, in the order each TCG_PCR_EVENT2 lists them. */
  algorithms: Array<{ algId: number; name: HashAlgName | undefined; digestSize: number }>;
  vendorInfo: Buffer;
}

/** One TCG_PCR_EVENT2 record (PFP §10.2.2). */
export interface TcgEvent {
  /** Position in the log; the Spec ID header is 0, so this matches `tpm2_eventlog`'s EventNum. */
  index: number;
  /** Byte offset of the record in the log (for error messages and debugging). */
  offset: number;
  pcr: number;
  type: number;
  typeName: string;
  /** One digest per bank, keyed by algorithm name (`0x0027`-style for algorithms Sigil does not know). */
  digests: Map<DigestAlgKey, Buffer>;
  data: Buffer;
}

export interface ParsedLog {
  specId: SpecIdEvent;
  events: TcgEvent[];
}

/** Caps that keep a hostile log from costing more than its own size in memory or time. */
export interface EventLogLimits {
  /** Whole log. Real firmware logs are 10–200 KB. */
  maxLogBytes: number;
  maxEvents: number;
  /** One event's data (a large dbx or db is ~30 KB). */
  maxEventDataBytes: number;
  /** Algorithms in the Spec ID event. */
  maxAlgorithms: number;
}

export const DEFAULT_EVENTLOG_LIMITS: Readonly<EventLogLimits> = Object.freeze({
  maxLogBytes: 16 * 1024 * 1024,
  maxEvents: 100_000,
  maxEventDataBytes: 1024 * 1024,
  maxAlgorithms: 8,
});

/** A PC Client platform TPM has 24 PCRs (PC Client Platform TPM Profile §4.6). */
export const PCR_COUNT = 24;
