/**
 * A simulated UEFI + GRUB boot, as the list of measurements firmware would make: the same
 * shape as a real OVMF/GRUB log (PFP §10.4 event types, GRUB's PCR 8/9 conventions), with
 * made-up but deterministic contents, so a firmware profile can pin its PCR values.
 *
 * Pure: no TPM here. `simulateBoot` in ./swtpm.ts extends these into a running swtpm and
 * `bootEvents` + `writeEventLog` + `replayEventLog` give the expected PCRs in software.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  EFI_CERT_SHA256_GUID,
  EFI_CERT_X509_GUID,
  EFI_GLOBAL_VARIABLE_GUID,
  EFI_IMAGE_SECURITY_DATABASE_GUID,
  encodeCrtmVersion,
  encodeFilePathDevicePath,
  encodeFirmwareBlob,
  encodeImageLoadEvent,
  encodeSignatureData,
  encodeSignatureList,
  encodeUefiVariable,
  parseEventLog,
  replayEventLog,
  SEPARATOR_DATA,
  writeEventLog,
  type EventToWrite,
  type PcrBank,
} from '../../src/tpm/eventlog/index.js';

/** What a test can choose about the boot; everything defaults to {@link DEFAULT_BOOT}. */
export interface BootSpec {
  /** EV_S_CRTM_VERSION string in PCR 0. */
  firmwareVersion?: string;
  /** The firmware volume measured into PCR 0 (EV_POST_CODE). Default: derived from the version. */
  firmwareImage?: Buffer;
  /** SecureBoot variable in PCR 7, and whether PK/KEK/db/dbx hold keys. */
  secureBoot?: boolean;
  /** The boot loader image; its SHA-256 is the PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION digest. */
  bootLoader?: Buffer;
  bootLoaderPath?: string;
  /** The kernel image, measured into PCR 9 by the boot loader (EV_IPL). */
  kernel?: Buffer;
  kernelPath?: string;
  /** Kernel command line, measured into PCR 8 as GRUB does (`kernel_cmdline: <path> <cmdline>`). */
  kernelCmdline?: string;
}

export const DEFAULT_BOOT = Object.freeze({
  firmwareVersion: 'Sigil Lab UEFI 1.0.0',
  secureBoot: true,
  bootLoader: Buffer.from('MZ\x90\x00 sigil lab boot loader 1.0\n', 'latin1'),
  bootLoaderPath: '\\EFI\\BOOT\\BOOTX64.EFI',
  kernel: Buffer.from('sigil lab kernel 6.1.0-sigil\n'),
  kernelPath: '/boot/vmlinuz-6.1.0-sigil',
  kernelCmdline: 'root=/dev/mapper/sigil-root ro quiet lockdown=integrity',
});

/** Owner GUID of the lab's secure boot keys (EFI_SIGNATURE_DATA.SignatureOwner). */
export const LAB_KEY_OWNER_GUID = '5f1a2c3e-7b4d-4e8a-9c0f-51c11a9b0017';

/**
 * A self-signed Ed25519 certificate "O=Sigil Lab, CN=Sigil Lab Secure Boot CA" standing in for
 * PK, KEK and the db entry. Fixed bytes (not generated per run) so PCR 7 is reproducible.
 */
export const LAB_SECURE_BOOT_CERT = Buffer.from(
  'MIIBcjCCASSgAwIBAgIBATAFBgMrZXAwNzESMBAGA1UECgwJU2lnaWwgTGFiMSEwHwYDVQQDDBhTaWdpbCBMYWIgU2VjdXJlIEJvb3QgQ0EwIBcNMjYxMTIxMTY1NDE0WhgPMjEyNjEwMjgxNjU0MTRaMDcxEjAQBgNVBAoMCVNpZ2lsIExhYjEhMB8GA1UEAwwYU2lnaWwgTGFiIFNlY3VyZSBCb290IENBMCowBQYDK2VwAyEAvCHbByDalHfPdwyZfrbohEstORU6uNBUhaKsYa2GpPSjUzBRMB0GA1UdDgQWBBRotVH0r1/nptZ/YEeDtu96oKcTbTAfBgNVHSMEGDAWgBRotVH0r1/nptZ/YEeDtu96oKcTbTAPBgNVHRMBAf8EBTADAQH/MAUGAytlcANBAHHOhQPOyFi6HLtNrp6jZHsXck4WqVwLyLTWcYKsUaIsKlRU8PkHjWwbwMy7GyLONx6a8Nc0xK0IbRX9fjDcAA8=',
  'base64',
);

function sha256(b: Uint8Array): Buffer {
  return createHash('sha256').update(b).digest();
}

function efiVariable(pcr: number, type: EventToWrite['type'], guid: string, name: string, data: Buffer): EventToWrite {
  return { pcr, type, data: encodeUefiVariable({ guid, name, data }) };
}

/** The measurements of one boot, in the order firmware and GRUB make them. */
export function bootEvents(spec: BootSpec = {}): EventToWrite[] {
  const version = spec.firmwareVersion ?? DEFAULT_BOOT.firmwareVersion;
  const firmwareImage = spec.firmwareImage ?? Buffer.from(`sigil-lab-firmware-volume:${version}`);
  const secureBoot = spec.secureBoot ?? DEFAULT_BOOT.secureBoot;
  const bootLoader = spec.bootLoader ?? DEFAULT_BOOT.bootLoader;
  const bootLoaderPath = spec.bootLoaderPath ?? DEFAULT_BOOT.bootLoaderPath;
  const kernel = spec.kernel ?? DEFAULT_BOOT.kernel;
  const kernelPath = spec.kernelPath ?? DEFAULT_BOOT.kernelPath;
  const cmdline = spec.kernelCmdline ?? DEFAULT_BOOT.kernelCmdline;

  const labKeys = encodeSignatureList(EFI_CERT_X509_GUID, [{ owner: LAB_KEY_OWNER_GUID, data: LAB_SECURE_BOOT_CERT }]);
  const dbx = encodeSignatureList(EFI_CERT_SHA256_GUID, [
    { owner: LAB_KEY_OWNER_GUID, data: sha256(Buffer.from('a revoked boot loader')) },
  ]);
  const none = Buffer.alloc(0);
  const action = (pcr: number, text: string): EventToWrite => ({ pcr, type: 'EV_EFI_ACTION', data: Buffer.from(text) });
  const separator = (pcr: number): EventToWrite => ({ pcr, type: 'EV_SEPARATOR', data: Buffer.from(SEPARATOR_DATA) });
  const grubText = `${kernelPath} ${cmdline}`;

  const events: EventToWrite[] = [
    // PCR 0: the CRTM's version string and the firmware volume it measured.
    { pcr: 0, type: 'EV_S_CRTM_VERSION', data: encodeCrtmVersion(version) },
    {
      pcr: 0,
      type: 'EV_POST_CODE',
      data: encodeFirmwareBlob({ base: 0xffc00000, length: firmwareImage.length }),
      measured: firmwareImage,
    },
    // PCR 7: secure boot policy, then its separator (PFP §3.3.4.8).
    efiVariable(
      7,
      'EV_EFI_VARIABLE_DRIVER_CONFIG',
      EFI_GLOBAL_VARIABLE_GUID,
      'SecureBoot',
      Buffer.from([secureBoot ? 1 : 0]),
    ),
    efiVariable(7, 'EV_EFI_VARIABLE_DRIVER_CONFIG', EFI_GLOBAL_VARIABLE_GUID, 'PK', secureBoot ? labKeys : none),
    efiVariable(7, 'EV_EFI_VARIABLE_DRIVER_CONFIG', EFI_GLOBAL_VARIABLE_GUID, 'KEK', secureBoot ? labKeys : none),
    efiVariable(
      7,
      'EV_EFI_VARIABLE_DRIVER_CONFIG',
      EFI_IMAGE_SECURITY_DATABASE_GUID,
      'db',
      secureBoot ? labKeys : none,
    ),
    efiVariable(7, 'EV_EFI_VARIABLE_DRIVER_CONFIG', EFI_IMAGE_SECURITY_DATABASE_GUID, 'dbx', secureBoot ? dbx : none),
    separator(7),
    // PCR 1: boot order; PCR 4: the boot manager is about to start a boot option.
    efiVariable(1, 'EV_EFI_VARIABLE_BOOT', EFI_GLOBAL_VARIABLE_GUID, 'BootOrder', Buffer.from([0x01, 0x00])),
    action(4, 'Calling EFI Application from Boot Option'),
    // ReadyToBoot: separators on PCR 0-6.
    ...[0, 1, 2, 3, 4, 5, 6].map(separator),
  ];
  if (secureBoot) {
    // The db entry that verified the boot loader (PFP §3.3.4.8, EV_EFI_VARIABLE_AUTHORITY).
    const authority = encodeSignatureData({ owner: LAB_KEY_OWNER_GUID, data: LAB_SECURE_BOOT_CERT });
    events.push(efiVariable(7, 'EV_EFI_VARIABLE_AUTHORITY', EFI_IMAGE_SECURITY_DATABASE_GUID, 'db', authority));
  }
  events.push(
    {
      pcr: 4,
      type: 'EV_EFI_BOOT_SERVICES_APPLICATION',
      data: encodeImageLoadEvent({
        imageLocationInMemory: 0x7e3a0000,
        imageLengthInMemory: bootLoader.length,
        imageLinkTimeAddress: 0,
        devicePath: encodeFilePathDevicePath(bootLoaderPath),
      }),
      measured: bootLoader,
    },
    // GRUB: the kernel file into PCR 9, the command line into PCR 8 (digest over the text after the prefix).
    { pcr: 9, type: 'EV_IPL', data: Buffer.from(`${kernelPath}\0`), measured: kernel },
    { pcr: 8, type: 'EV_IPL', data: Buffer.from(`kernel_cmdline: ${grubText}\0`), measured: Buffer.from(grubText) },
    action(5, 'Exit Boot Services Invocation'),
    action(5, 'Exit Boot Services Returned with Success'),
  );
  return events;
}

/** The log and the PCR values (per bank) that booting `spec` produces on a freshly reset TPM. */
export function simulatedBootLog(
  spec: BootSpec = {},
  banks: readonly PcrBank[] = ['sha256'],
): { eventLog: Buffer; pcrsByBank: Map<PcrBank, Map<number, Buffer>>; events: EventToWrite[] } {
  const events = bootEvents(spec);
  const eventLog = writeEventLog(events, banks);
  const parsed = parseEventLog(eventLog);
  const pcrsByBank = new Map<PcrBank, Map<number, Buffer>>();
  for (const bank of banks) pcrsByBank.set(bank, replayEventLog(parsed, bank));
  return { eventLog, pcrsByBank, events };
}

/**
 * The firmware profiles the continuous-attestation tests judge a {@link DEFAULT_BOOT} swtpm by:
 * `lab-attested` pins PCR 16 (resettable, so a test can extend it and restore it with
 * tpm2_pcrreset) to its reset value and reads the simulated boot's event log;
 * `lab-attested-23` pins PCR 23 only (a rule switched to it changes the PCR selection).
 */
export const LAB_ATTESTED_PROFILE = `name: lab-attested
pcr_bank: sha256
pcrs:
  "16": ["${'00'.repeat(32)}"]
event_log:
  require: true
  rules:
    secure_boot: enabled
    kernel_cmdline_contains: ["lockdown=integrity"]
    crtm_versions: ["Sigil Lab UEFI 1.0.0"]
`;
export const LAB_ATTESTED_23_PROFILE = `name: lab-attested-23
pcr_bank: sha256
pcrs:
  "23": ["${'00'.repeat(32)}"]
`;

/**
 * Write the lab profiles (both, unless `only` names some) into `dir` and point
 * SIGIL_FIRMWARE_PROFILES_DIR at it (an issuer process started afterwards inherits it:
 * attest/firmware/profiles.ts). Returns what puts the variable back as it was.
 */
export function installLabProfiles(
  dir: string,
  only: ReadonlyArray<'lab-attested' | 'lab-attested-23'> = ['lab-attested', 'lab-attested-23'],
): () => void {
  mkdirSync(dir, { recursive: true });
  if (only.includes('lab-attested')) writeFileSync(join(dir, 'lab-attested.yaml'), LAB_ATTESTED_PROFILE);
  if (only.includes('lab-attested-23')) writeFileSync(join(dir, 'lab-attested-23.yaml'), LAB_ATTESTED_23_PROFILE);
  const previous = process.env.SIGIL_FIRMWARE_PROFILES_DIR;
  process.env.SIGIL_FIRMWARE_PROFILES_DIR = dir;
  return () => {
    if (previous === undefined) delete process.env.SIGIL_FIRMWARE_PROFILES_DIR;
    else process.env.SIGIL_FIRMWARE_PROFILES_DIR = previous;
  };
}
