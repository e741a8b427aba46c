/** Firmware profiles: golden measurements per device model (firmware-profiles/README.md). */
export { FirmwareProfiles } from './profiles.js';
export { loadFirmwareProfiles } from './load.js';
export {
  parseFirmwareProfile,
  PROFILE_NAME_RE,
  type FirmwareProfile,
  type EventLogRules,
  type SecureBootRule,
} from './schema.js';
export { BootRefusal, judgeBoot, selectionFor } from './boot.js';
export {
  evaluateProfile,
  containsWords,
  type ProfileEvidence,
  type ProfileCheck,
  type ProfileMatch,
  type ProfileRefusal,
  type ProfileResult,
} from './evaluate.js';
