/**
 * TCG PC Client crypto-agile event log: parse, replay, write, and decode the event data that
 * firmware profiles rule on. Spec: TCG PC Client Platform Firmware Profile ("PFP") §10.
 */
export { parseEventLog, algKey, SPEC_ID_SIGNATURE } from './parse.js';
export { replayEventLog, extendPcr, hashBytes } from './replay.js';
export { writeEventLog, eventDigest, eventTypeValue, type EventToWrite, type WriteOptions } from './write.js';
export { extractBootFacts, type BootFacts, type BootFactsResult } from './facts.js';
export {
  decodeStartupLocality,
  encodeStartupLocality,
  decodeCrtmVersion,
  encodeCrtmVersion,
  decodeSeparator,
  SEPARATOR_DATA,
  decodeEventString,
  decodeFirmwareBlob,
  encodeFirmwareBlob,
  type FirmwareBlob,
} from './event-data.js';
export {
  EFI_GLOBAL_VARIABLE_GUID,
  EFI_IMAGE_SECURITY_DATABASE_GUID,
  EFI_CERT_X509_GUID,
  EFI_CERT_SHA256_GUID,
  formatGuid,
  guidBytes,
  decodeUefiVariable,
  encodeUefiVariable,
  isSecureBootVariable,
  secureBootEnabled,
  decodeImageLoadEvent,
  encodeImageLoadEvent,
  encodeFilePathDevicePath,
  encodeSignatureData,
  encodeSignatureList,
  type UefiVariable,
  type ImageLoadEvent,
  type SignatureData,
} from './uefi.js';
export {
  EV,
  eventTypeName,
  HASH_ALGS,
  PCR_BANKS,
  PCR_COUNT,
  DEFAULT_EVENTLOG_LIMITS,
  hashAlgById,
  isPcrBank,
  type EventTypeName,
  type HashAlgName,
  type PcrBank,
  type DigestAlgKey,
  type UnknownAlgKey,
  type SpecIdEvent,
  type TcgEvent,
  type ParsedLog,
  type EventLogLimits,
} from './types.js';
export { LeReader, LeWriter, eventLogError } from './reader.js';
