/**
 * TPM response codes (Part 2 §6.6) as typed errors.
 *
 * A TPM_RC is either format 0 (bit 7 clear: a plain code, a warning when bit 11 is set) or
 * format 1 (bit 7 set: bits 5:0 the error, bit 6 set when bits 11:8 number the failing
 * *parameter*, else they number a handle (1–7) or a session (bit 11 set, 1–7)). The canonical
 * code strips the position so `isTpmRc(err, TPM_RC.POLICY_FAIL)` works whichever session failed.
 */
import { SigilError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { TPM_CC, hex32, nameOf } from './constants.js';

const RC_VER1 = 0x100;
const RC_FMT1 = 0x080;
const RC_WARN = 0x900;

/** Part 2 §6.6.3 TPM_RC, canonical values. */
export const TPM_RC = {
  SUCCESS: 0x000,
  BAD_TAG: 0x01e,
  // format 0, RC_VER1 + n
  INITIALIZE: RC_VER1 + 0x000,
  FAILURE: RC_VER1 + 0x001,
  SEQUENCE: RC_VER1 + 0x003,
  PRIVATE: RC_VER1 + 0x00b,
  HMAC: RC_VER1 + 0x019,
  DISABLED: RC_VER1 + 0x020,
  EXCLUSIVE: RC_VER1 + 0x021,
  AUTH_TYPE: RC_VER1 + 0x024,
  AUTH_MISSING: RC_VER1 + 0x025,
  POLICY: RC_VER1 + 0x026,
  PCR: RC_VER1 + 0x027,
  PCR_CHANGED: RC_VER1 + 0x028,
  UPGRADE: RC_VER1 + 0x02d,
  TOO_MANY_CONTEXTS: RC_VER1 + 0x02e,
  AUTH_UNAVAILABLE: RC_VER1 + 0x02f,
  REBOOT: RC_VER1 + 0x030,
  UNBALANCED: RC_VER1 + 0x031,
  COMMAND_SIZE: RC_VER1 + 0x042,
  COMMAND_CODE: RC_VER1 + 0x043,
  AUTHSIZE: RC_VER1 + 0x044,
  AUTH_CONTEXT: RC_VER1 + 0x045,
  NV_RANGE: RC_VER1 + 0x046,
  NV_SIZE: RC_VER1 + 0x047,
  NV_LOCKED: RC_VER1 + 0x048,
  NV_AUTHORIZATION: RC_VER1 + 0x049,
  NV_UNINITIALIZED: RC_VER1 + 0x04a,
  NV_SPACE: RC_VER1 + 0x04b,
  NV_DEFINED: RC_VER1 + 0x04c,
  BAD_CONTEXT: RC_VER1 + 0x050,
  CPHASH: RC_VER1 + 0x051,
  PARENT: RC_VER1 + 0x052,
  NEEDS_TEST: RC_VER1 + 0x053,
  NO_RESULT: RC_VER1 + 0x054,
  SENSITIVE: RC_VER1 + 0x055,
  // format 1, RC_FMT1 + n
  ASYMMETRIC: RC_FMT1 + 0x001,
  ATTRIBUTES: RC_FMT1 + 0x002,
  HASH: RC_FMT1 + 0x003,
  VALUE: RC_FMT1 + 0x004,
  HIERARCHY: RC_FMT1 + 0x005,
  KEY_SIZE: RC_FMT1 + 0x007,
  MGF: RC_FMT1 + 0x008,
  MODE: RC_FMT1 + 0x009,
  TYPE: RC_FMT1 + 0x00a,
  HANDLE: RC_FMT1 + 0x00b,
  KDF: RC_FMT1 + 0x00c,
  RANGE: RC_FMT1 + 0x00d,
  AUTH_FAIL: RC_FMT1 + 0x00e,
  NONCE: RC_FMT1 + 0x00f,
  PP: RC_FMT1 + 0x010,
  SCHEME: RC_FMT1 + 0x012,
  SIZE: RC_FMT1 + 0x015,
  SYMMETRIC: RC_FMT1 + 0x016,
  TAG: RC_FMT1 + 0x017,
  SELECTOR: RC_FMT1 + 0x018,
  INSUFFICIENT: RC_FMT1 + 0x01a,
  SIGNATURE: RC_FMT1 + 0x01b,
  KEY: RC_FMT1 + 0x01c,
  POLICY_FAIL: RC_FMT1 + 0x01d,
  INTEGRITY: RC_FMT1 + 0x01f,
  TICKET: RC_FMT1 + 0x020,
  RESERVED_BITS: RC_FMT1 + 0x021,
  BAD_AUTH: RC_FMT1 + 0x022,
  EXPIRED: RC_FMT1 + 0x023,
  POLICY_CC: RC_FMT1 + 0x024,
  BINDING: RC_FMT1 + 0x025,
  CURVE: RC_FMT1 + 0x026,
  ECC_POINT: RC_FMT1 + 0x027,
  // warnings, RC_WARN + n
  CONTEXT_GAP: RC_WARN + 0x001,
  OBJECT_MEMORY: RC_WARN + 0x002,
  SESSION_MEMORY: RC_WARN + 0x003,
  MEMORY: RC_WARN + 0x004,
  SESSION_HANDLES: RC_WARN + 0x005,
  OBJECT_HANDLES: RC_WARN + 0x006,
  LOCALITY: RC_WARN + 0x007,
  YIELDED: RC_WARN + 0x008,
  CANCELED: RC_WARN + 0x009,
  TESTING: RC_WARN + 0x00a,
  REFERENCE_H0: RC_WARN + 0x010,
  REFERENCE_S0: RC_WARN + 0x018,
  NV_RATE: RC_WARN + 0x020,
  LOCKOUT: RC_WARN + 0x021,
  RETRY: RC_WARN + 0x022,
  NV_UNAVAILABLE: RC_WARN + 0x023,
  NOT_USED: RC_WARN + 0x07f,
} as const;

/** Codes worth sending again unchanged after a short wait (Part 2 §6.6.3 warnings). */
const RETRYABLE: ReadonlySet<number> = new Set([
  TPM_RC.YIELDED,
  TPM_RC.TESTING,
  TPM_RC.RETRY,
  TPM_RC.NV_RATE,
  TPM_RC.NV_UNAVAILABLE,
  TPM_RC.CANCELED,
]);

/** Codes the pipeline retries by itself: the command had no effect. */
export const AUTO_RETRY: ReadonlySet<number> = new Set([TPM_RC.YIELDED, TPM_RC.TESTING, TPM_RC.RETRY]);

export interface DecodedRc {
  rc: number;
  /** The code without parameter/handle/session position bits. */
  base: number;
  /** Bit 7: format one (position-qualified). */
  formatOne: boolean;
  warning: boolean;
  /** Bit 10 of a format-0 code: defined by the TPM vendor. */
  vendor: boolean;
  /** Format-0 code below RC_VER1: a TPM 1.2 code. */
  tpm12: boolean;
  /** 1-based parameter number when the failure is in a parameter. */
  parameter?: number;
  /** 1-based handle number when the failure is in a handle. */
  handle?: number;
  /** 1-based session number when the failure is in an authorization session. */
  session?: number;
  /** "TPM_RC_POLICY_FAIL" for known codes. */
  name: string;
}

export function decodeRc(rc: number): DecodedRc {
  rc = rc >>> 0;
  if (rc & RC_FMT1) {
    const base = rc & 0xbf;
    const n = (rc >>> 8) & 0xf;
    const out: DecodedRc = {
      rc,
      base,
      formatOne: true,
      warning: false,
      vendor: false,
      tpm12: false,
      name: rcName(base),
    };
    if (rc & 0x40) out.parameter = n;
    else if (n & 0x8) out.session = n & 0x7;
    else if (n !== 0) out.handle = n;
    return out;
  }
  const base = rc & 0xfff;
  const vendor = (rc & 0x400) !== 0;
  return {
    rc,
    base,
    formatOne: false,
    warning: (rc & 0x800) !== 0 && (rc & RC_VER1) !== 0,
    vendor,
    tpm12: (rc & RC_VER1) === 0 && rc !== 0,
    name: vendor ? `TPM_RC_VENDOR(${hex32(rc)})` : rcName(base),
  };
}

function rcName(base: number): string {
  const n = nameOf(TPM_RC, base);
  return n ? `TPM_RC_${n}` : `TPM_RC(0x${base.toString(16).padStart(3, '0')})`;
}

function describe(d: DecodedRc): string {
  const where =
    d.parameter !== undefined
      ? ` in parameter ${d.parameter}`
      : d.handle !== undefined
        ? ` in handle ${d.handle}`
        : d.session !== undefined
          ? ` in session ${d.session}`
          : '';
  return `${d.name}${where} (rc ${hex32(d.rc)})`;
}

/** The SigilError code a TPM response code maps to. */
function sigilCode(d: DecodedRc): ErrorCode {
  if (RETRYABLE.has(d.base) || d.base === TPM_RC.OBJECT_MEMORY || d.base === TPM_RC.SESSION_MEMORY)
    return 'tpm_unavailable';
  return 'tpm_error';
}

/** A TPM answered a command with a non-zero response code. */
export class TpmError extends SigilError {
  readonly rc: number;
  readonly decoded: DecodedRc;
  /** The command that failed, e.g. "Quote". */
  readonly command: string;
  readonly commandCode: number;

  constructor(commandCode: number, rc: number) {
    const decoded = decodeRc(rc);
    const command = nameOf(TPM_CC, commandCode) ?? hex32(commandCode);
    super(sigilCode(decoded), `TPM2_${command} failed: ${describe(decoded)}`);
    this.name = 'TpmError';
    this.rc = decoded.rc;
    this.decoded = decoded;
    this.command = command;
    this.commandCode = commandCode;
  }

  /** Canonical code (no position bits). */
  get base(): number {
    return this.decoded.base;
  }

  /** Whether sending the same command again later may succeed. */
  override get retryable(): boolean {
    return RETRYABLE.has(this.decoded.base);
  }
}

/** Whether `err` is a TpmError whose canonical code is `rc` (any position). */
export function isTpmRc(err: unknown, rc: number): err is TpmError {
  return err instanceof TpmError && err.decoded.base === decodeRc(rc).base;
}
