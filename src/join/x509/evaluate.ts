/**
 * Which x509 join rule, if any, accepts a device chain. Rules are tried in name order; the
 * first that accepts wins. Every check of a rule runs in a fixed order — trust anchors, path,
 * revocation, allow list, registration — and when no rule accepts, the refusal is the one from
 * the rule that got furthest (a chain every rule distrusts is `x509_untrusted_ca`; a chain one
 * rule trusts but whose certificate is revoked is `x509_revoked`), so the code names the check
 * that actually stopped the device.
 */
import { SigilError } from '../../errors.js';
import type { DeviceRecord, JoinAttestPort, JoinRule } from '../port.js';
import { attributeValues } from '../../pki/name-reader.js';
import { OID } from '../../pki/oids.js';
import { checkAllowed } from './allow.js';
import { describeCert, type ParsedCert } from '../x509-cert.js';
import { checkRevocation } from '../x509-crl.js';
import { readCaFile, readCrlFile, type TrustFileCache } from '../trust-files.js';
import { validatePath, type ValidatedPath } from '../x509-path.js';
import { DEFAULT_MAX_INTERMEDIATES, type X509Rule } from './rule.js';

export interface Decision {
  rule: JoinRule<X509Rule>;
  path: ValidatedPath;
  /** The registration, for registered_only rules. */
  device: DeviceRecord | undefined;
}

/** How far a rule got; the furthest refusal is reported. */
const Stage = { Untrusted: 0, RuleFiles: 1, Path: 2, Revocation: 3, Allow: 4, Registration: 5 } as const;
type Stage = (typeof Stage)[keyof typeof Stage];

/** `files`: the issuer's parsed CA and CRL files (join/caches.ts). */
export async function evaluateChain(
  port: Pick<JoinAttestPort, 'device'>,
  files: TrustFileCache,
  rules: ReadonlyArray<JoinRule<X509Rule>>,
  chain: readonly ParsedCert[],
  at: Date,
): Promise<Decision> {
  const [leaf, ...intermediates] = chain;
  if (leaf === undefined) throw new SigilError('x509_chain_malformed', 'the chain is empty');
  let best: { stage: Stage; error: SigilError } | undefined;
  for (const rule of rules) {
    let stage: Stage = Stage.RuleFiles;
    try {
      const anchors = rule.config.ca_files.flatMap((f) => readCaFile(files, f));
      stage = Stage.Path;
      const path = validatePath({
        leaf,
        intermediates,
        anchors,
        at,
        maxIntermediates: rule.config.max_intermediates ?? DEFAULT_MAX_INTERMEDIATES,
      });
      stage = Stage.Revocation;
      await checkRevocation(
        path.certs,
        (rule.config.crl_files ?? []).flatMap((f) => readCrlFile(files, f)),
        at,
      );
      stage = Stage.Allow;
      checkAllowed(rule.config.allow, leaf, rule.name);
      stage = Stage.Registration;
      const device = rule.config.registered_only ? await registration(port, rule.name, leaf) : undefined;
      return { rule, path, device };
    } catch (err) {
      if (!(err instanceof SigilError)) throw err;
      const s = err.code === 'x509_untrusted_ca' ? Stage.Untrusted : stage;
      if (best === undefined || s > best.stage) best = { stage: s, error: err };
    }
  }
  throw best!.error;
}

/** The URI SAN prefix `sigil factory` names a device's serial with (factory/idevid.ts). */
const DEVICE_URN = 'urn:sigil:device:';

async function registration(
  port: Pick<JoinAttestPort, 'device'>,
  rule: string,
  leaf: ParsedCert,
): Promise<DeviceRecord> {
  const device = await port.device(leaf.fingerprint);
  if (device === undefined) {
    throw new SigilError(
      'device_not_registered',
      `${describeCert(leaf)} (fingerprint ${leaf.fingerprint}) is not in any imported device manifest, and join_rule ${rule} has registered_only: true; import it with: sigil ctl --data-dir <issuer-data-dir> devices import MANIFEST.jsonl --rule ${rule}`,
    );
  }
  if (device.rule !== null && device.rule !== rule) {
    throw new SigilError(
      'device_not_registered',
      `device ${device.serial} is registered for join_rule ${device.rule}, not ${rule}`,
    );
  }
  // The manifest is not signed; the certificate is. A device certificate that names its serial
  // (IEEE 802.1AR: the subject's serialNumber) must name the one the manifest registered, so
  // whoever edits a manifest on its way to the issuer cannot register one real device under
  // another's serial (the serial becomes the instance's device_serial fact, which policy and
  // workload entries may select on).
  // `sigil factory` also names it in a URI SAN (urn:sigil:device:<serial>), checked the same way.
  const named = [
    ...attributeValues(leaf.subject, OID.serialNumber),
    ...leaf.san.flatMap((n) =>
      n.kind === 'uri' && n.value.startsWith(DEVICE_URN) ? [n.value.slice(DEVICE_URN.length)] : [],
    ),
  ];
  if (named.some((n) => n !== device.serial)) {
    throw new SigilError(
      'device_serial_mismatch',
      `${describeCert(leaf)} names device serial ${[...new Set(named)].join(', ')}, but the imported manifest registered its fingerprint ${leaf.fingerprint} as device ${device.serial}; re-import the factory's manifest`,
    );
  }
  return device;
}
