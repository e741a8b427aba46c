/**
 * TPM 2.0 constants, from TCG "Trusted Platform Module Library, Part 2: Structures"
 * (revision 1.59). Every table is `as const` so the literal values are types: unions keyed on
 * an algorithm or a structure tag narrow in the compiler.
 */

/** Part 2 §6.9 TPM_ST: structure tags. */
export const TPM_ST = {
  RSP_COMMAND: 0x00c4,
  NULL: 0x8000,
  NO_SESSIONS: 0x8001,
  SESSIONS: 0x8002,
  ATTEST_NV: 0x8014,
  ATTEST_COMMAND_AUDIT: 0x8015,
  ATTEST_SESSION_AUDIT: 0x8016,
  ATTEST_CERTIFY: 0x8017,
  ATTEST_QUOTE: 0x8018,
  ATTEST_TIME: 0x8019,
  ATTEST_CREATION: 0x801a,
  ATTEST_NV_DIGEST: 0x801c,
  CREATION: 0x8021,
  VERIFIED: 0x8022,
  AUTH_SECRET: 0x8023,
  HASHCHECK: 0x8024,
  AUTH_SIGNED: 0x8025,
  FU_MANIFEST: 0x8029,
} as const;

/** Part 2 §6.5.2 TPM_CC: command codes (only those Sigil declares or may name in errors). */
export const TPM_CC = {
  NV_UndefineSpaceSpecial: 0x011f,
  EvictControl: 0x0120,
  HierarchyControl: 0x0121,
  NV_UndefineSpace: 0x0122,
  Clear: 0x0126,
  HierarchyChangeAuth: 0x0129,
  NV_DefineSpace: 0x012a,
  CreatePrimary: 0x0131,
  NV_Increment: 0x0134,
  NV_Extend: 0x0136,
  NV_Write: 0x0137,
  NV_WriteLock: 0x0138,
  DictionaryAttackLockReset: 0x0139,
  NV_ChangeAuth: 0x013b,
  PCR_Event: 0x013c,
  PCR_Reset: 0x013d,
  SelfTest: 0x0143,
  Startup: 0x0144,
  Shutdown: 0x0145,
  StirRandom: 0x0146,
  ActivateCredential: 0x0147,
  Certify: 0x0148,
  PolicyNV: 0x0149,
  CertifyCreation: 0x014a,
  Duplicate: 0x014b,
  GetTime: 0x014c,
  NV_Read: 0x014e,
  NV_ReadLock: 0x014f,
  ObjectChangeAuth: 0x0150,
  PolicySecret: 0x0151,
  Create: 0x0153,
  ECDH_ZGen: 0x0154,
  HMAC: 0x0155,
  Import: 0x0156,
  Load: 0x0157,
  Quote: 0x0158,
  RSA_Decrypt: 0x0159,
  Sign: 0x015d,
  Unseal: 0x015e,
  PolicySigned: 0x0160,
  ContextLoad: 0x0161,
  ContextSave: 0x0162,
  ECDH_KeyGen: 0x0163,
  FlushContext: 0x0165,
  LoadExternal: 0x0167,
  MakeCredential: 0x0168,
  NV_ReadPublic: 0x0169,
  PolicyAuthorize: 0x016a,
  PolicyAuthValue: 0x016b,
  PolicyCommandCode: 0x016c,
  PolicyCpHash: 0x016e,
  PolicyNameHash: 0x0170,
  PolicyOR: 0x0171,
  ReadPublic: 0x0173,
  RSA_Encrypt: 0x0174,
  StartAuthSession: 0x0176,
  VerifySignature: 0x0177,
  GetCapability: 0x017a,
  GetRandom: 0x017b,
  GetTestResult: 0x017c,
  Hash: 0x017d,
  PCR_Read: 0x017e,
  PolicyPCR: 0x017f,
  PolicyRestart: 0x0180,
  ReadClock: 0x0181,
  PCR_Extend: 0x0182,
  NV_Certify: 0x0184,
  PolicyGetDigest: 0x0189,
  PolicyPassword: 0x018c,
  CreateLoaded: 0x0191,
  PolicyAuthorizeNV: 0x0192,
  CertifyX509: 0x0197,
} as const;
export type TpmCc = (typeof TPM_CC)[keyof typeof TPM_CC];

/** Part 2 §6.3 TPM_ALG_ID (values from the TCG Algorithm Registry). */
export const TPM_ALG = {
  ERROR: 0x0000,
  RSA: 0x0001,
  TDES: 0x0003,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  MGF1: 0x0007,
  KEYEDHASH: 0x0008,
  XOR: 0x000a,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  SM3_256: 0x0012,
  SM4: 0x0013,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  SM2: 0x001b,
  ECSCHNORR: 0x001c,
  ECMQV: 0x001d,
  KDF1_SP800_56A: 0x0020,
  KDF2: 0x0021,
  KDF1_SP800_108: 0x0022,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CAMELLIA: 0x0026,
  SHA3_256: 0x0027,
  SHA3_384: 0x0028,
  SHA3_512: 0x0029,
  CTR: 0x0040,
  OFB: 0x0041,
  CBC: 0x0042,
  CFB: 0x0043,
  ECB: 0x0044,
} as const;
export type TpmAlg = (typeof TPM_ALG)[keyof typeof TPM_ALG];

/** Part 2 §6.4 TPM_ECC_CURVE. */
export const TPM_ECC_CURVE = {
  NONE: 0x0000,
  NIST_P192: 0x0001,
  NIST_P224: 0x0002,
  NIST_P256: 0x0003,
  NIST_P384: 0x0004,
  NIST_P521: 0x0005,
  BN_P256: 0x0010,
  BN_P638: 0x0011,
  SM2_P256: 0x0020,
} as const;

/** Part 2 §7.4 TPM_RH: permanent handles. */
export const TPM_RH = {
  OWNER: 0x40000001,
  NULL: 0x40000007,
  UNASSIGNED: 0x40000008,
  /** TPM_RS_PW: the password authorization pseudo-session. */
  PW: 0x40000009,
  LOCKOUT: 0x4000000a,
  ENDORSEMENT: 0x4000000b,
  PLATFORM: 0x4000000c,
  PLATFORM_NV: 0x4000000d,
} as const;

/** Part 2 §7.2 TPM_HT: the handle type is the top byte of a handle. */
export const TPM_HT = {
  PCR: 0x00,
  NV_INDEX: 0x01,
  HMAC_SESSION: 0x02,
  LOADED_SESSION: 0x02,
  POLICY_SESSION: 0x03,
  SAVED_SESSION: 0x03,
  PERMANENT: 0x40,
  TRANSIENT: 0x80,
  PERSISTENT: 0x81,
  AC: 0x90,
} as const;

export function handleType(handle: number): number {
  return handle >>> 24;
}

/** Part 2 §6.11 TPM_SE: session types. */
export const TPM_SE = { HMAC: 0x00, POLICY: 0x01, TRIAL: 0x03 } as const;

/** Part 2 §6.10 TPM_SU: startup and shutdown types. */
export const TPM_SU = { CLEAR: 0x0000, STATE: 0x0001 } as const;

/** Part 2 §6.12 TPM_CAP. */
export const TPM_CAP = {
  ALGS: 0x00000000,
  HANDLES: 0x00000001,
  COMMANDS: 0x00000002,
  PP_COMMANDS: 0x00000003,
  AUDIT_COMMANDS: 0x00000004,
  PCRS: 0x00000005,
  TPM_PROPERTIES: 0x00000006,
  PCR_PROPERTIES: 0x00000007,
  ECC_CURVES: 0x00000008,
  AUTH_POLICIES: 0x00000009,
} as const;

/** Part 2 §6.13 TPM_PT: fixed (0x100) and variable (0x200) TPM properties. */
export const TPM_PT = {
  FAMILY_INDICATOR: 0x100,
  LEVEL: 0x101,
  REVISION: 0x102,
  DAY_OF_YEAR: 0x103,
  YEAR: 0x104,
  MANUFACTURER: 0x105,
  VENDOR_STRING_1: 0x106,
  VENDOR_STRING_2: 0x107,
  VENDOR_STRING_3: 0x108,
  VENDOR_STRING_4: 0x109,
  VENDOR_TPM_TYPE: 0x10a,
  FIRMWARE_VERSION_1: 0x10b,
  FIRMWARE_VERSION_2: 0x10c,
  INPUT_BUFFER: 0x10d,
  HR_TRANSIENT_MIN: 0x10e,
  HR_PERSISTENT_MIN: 0x10f,
  HR_LOADED_MIN: 0x110,
  ACTIVE_SESSIONS_MAX: 0x111,
  PCR_COUNT: 0x112,
  PCR_SELECT_MIN: 0x113,
  CONTEXT_GAP_MAX: 0x114,
  NV_COUNTERS_MAX: 0x116,
  NV_INDEX_MAX: 0x117,
  MEMORY: 0x118,
  CLOCK_UPDATE: 0x119,
  CONTEXT_HASH: 0x11a,
  CONTEXT_SYM: 0x11b,
  CONTEXT_SYM_SIZE: 0x11c,
  ORDERLY_COUNT: 0x11d,
  MAX_COMMAND_SIZE: 0x11e,
  MAX_RESPONSE_SIZE: 0x11f,
  MAX_DIGEST: 0x120,
  MAX_OBJECT_CONTEXT: 0x121,
  MAX_SESSION_CONTEXT: 0x122,
  NV_BUFFER_MAX: 0x12c,
  PERMANENT: 0x200,
  STARTUP_CLEAR: 0x201,
  HR_NV_INDEX: 0x202,
  HR_LOADED: 0x203,
  HR_LOADED_AVAIL: 0x204,
  HR_ACTIVE: 0x205,
  HR_ACTIVE_AVAIL: 0x206,
  HR_TRANSIENT_AVAIL: 0x207,
  HR_PERSISTENT: 0x208,
  HR_PERSISTENT_AVAIL: 0x209,
  LOCKOUT_COUNTER: 0x20e,
  MAX_AUTH_FAIL: 0x20f,
} as const;

/** Part 2 §8.3 TPMA_OBJECT bits. */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
  x509sign: 1 << 19,
} as const;

/** Part 2 §8.4 TPMA_SESSION bits. */
export const TPMA_SESSION = {
  continueSession: 0x01,
  auditExclusive: 0x02,
  auditReset: 0x04,
  decrypt: 0x20,
  encrypt: 0x40,
  audit: 0x80,
} as const;

/** Part 2 §13.4 TPMA_NV bits; TPM_NT is the 4-bit field at bits 7:4 (§13.2). */
export const TPMA_NV = {
  PPWRITE: 1 << 0,
  OWNERWRITE: 1 << 1,
  AUTHWRITE: 1 << 2,
  POLICYWRITE: 1 << 3,
  POLICY_DELETE: 1 << 10,
  WRITELOCKED: 1 << 11,
  WRITEALL: 1 << 12,
  WRITEDEFINE: 1 << 13,
  WRITE_STCLEAR: 1 << 14,
  GLOBALLOCK: 1 << 15,
  PPREAD: 1 << 16,
  OWNERREAD: 1 << 17,
  AUTHREAD: 1 << 18,
  POLICYREAD: 1 << 19,
  NO_DA: 1 << 25,
  ORDERLY: 1 << 26,
  CLEAR_STCLEAR: 1 << 27,
  READLOCKED: 1 << 28,
  WRITTEN: 1 << 29,
  PLATFORMCREATE: 1 << 30,
  /** Bit 31: written as an unsigned value. */
  READ_STCLEAR: 0x80000000,
} as const;

/** Part 2 §13.2 TPM_NT, already shifted into TPMA_NV bits 7:4. */
export const TPM_NT = {
  ORDINARY: 0x0 << 4,
  COUNTER: 0x1 << 4,
  BITS: 0x2 << 4,
  EXTEND: 0x4 << 4,
  PIN_FAIL: 0x8 << 4,
  PIN_PASS: 0x9 << 4,
} as const;

/** Part 2 §6.2 TPM_GENERATED_VALUE: "\xffTCG", the magic of every TPMS_ATTEST. */
export const TPM_GENERATED_VALUE = 0xff544347;

/** Part 2 §6.8 TPMA_LOCALITY is a bit field; these are the plain localities. */
export const TPM_YES = 1;
export const TPM_NO = 0;

/** Well-known NV indices and persistent handles (TCG EK Credential Profile 2.5 §2.2.1.4/§2.2.1.5). */
export const EK_NV_INDEX = {
  RSA2048_CERT: 0x01c00002,
  RSA2048_NONCE: 0x01c00003,
  RSA2048_TEMPLATE: 0x01c00004,
  ECC_P256_CERT: 0x01c0000a,
  ECC_P256_NONCE: 0x01c0000b,
  ECC_P256_TEMPLATE: 0x01c0000c,
  /** High range: RSA 2048 (H-1) / ECC P-256 (H-2) / ECC P-384 (H-3) certificates. */
  RSA2048_H_CERT: 0x01c00012,
  ECC_P256_H_CERT: 0x01c00014,
  ECC_P384_H_CERT: 0x01c00016,
  PLATFORM_CERT: 0x01c08000,
} as const;

export const EK_PERSISTENT_HANDLE = {
  RSA2048: 0x81010001,
  ECC_P256: 0x81010002,
  ECC_P384_H: 0x81010016,
} as const;

/** Reverse lookup used in messages: `nameOf(TPM_CC, 0x158)` → "Quote". */
export function nameOf(table: Readonly<Record<string, number>>, value: number): string | undefined {
  for (const [k, v] of Object.entries(table)) if (v === value) return k;
  return undefined;
}

export function hex32(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}
