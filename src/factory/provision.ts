/**
 * Provisioning one device on the factory line (`sigil factory provision`):
 *
 *   1. read the EK: its certificate from the TCG NV index when present, and its public area
 *      (persistent EK, else recreated from the profile template) → ek_public_hash
 *   2. create the IDevID key in the TPM under the SRK: non-restricted ECDSA P-256,
 *      fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA | sign — the agent's
 *      identity key template (keystore/tpm.ts identityKeyTemplate): born in the TPM, never
 *      exportable; noDA because the key has no authValue to guess, and without it every power
 *      loss after a join counts as a failed authorization until the TPM locks the IDevID out —
 *      and make it persistent at `handle` (default 0x81000100), so the device finds it without
 *      any file
 *   3. issue the IDevID certificate from the factory CA (idevid.ts)
 *   4. store the certificate: `<certDir>/<serial>.pem` (leaf + intermediates, 0644) and,
 *      optionally, the DER in an NV index (written in TPM_PT_NV_BUFFER_MAX chunks); with
 *      `tss2Key`, also `<certDir>/<serial>.tss2.pem` (0600): the key's blobs under the SRK as a
 *      TSS2 PRIVATE KEY, for OpenSSL's tpm2 provider (802.1X, TLS client auth with the IDevID)
 *   5. append one manifest line (manifest.ts), durably — the last step, so a device that
 *      failed anywhere before has no line
 *
 * A TPM that already holds a key at `handle` (or an NV index at `nvIndex`), or a serial already
 * in the manifest, is refused (`device_already_provisioned`) unless `force`. If a step after
 * the key was made persistent fails, the new key, NV index and files are removed again.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { checkAk } from '../attest/ak.js';
import { verifyCertify } from '../attest/certify.js';
import { checkActivation, credentialChallenge } from '../attest/credential.js';
import { checkIdentityKey } from '../attest/key.js';
import { encodePublic, encodeSignedAttest, parseSignedAttest } from '../attest/structures.js';
import { checkEkForRule, readEk as readAttestedEkEvidence } from '../join/ek-trust.js';
import { SigilError } from '../errors.js';
import { readCertificate } from '../pki/cert-reader.js';
import { formatName, readName } from '../pki/name-reader.js';
import { toPem } from '../pki/pem.js';
import { serialHex } from '../pki/serial.js';
import { identityKeyTemplate } from '../keystore/tpm.js';
import { writeTss2Pem } from '../keystore/tss2-pem.js';
import { TPMA_NV, TPM_HT, TPM_NT, TPM_RH, handleType } from '../tpm/constants.js';
import type { EkKind } from '../tpm/ek.js';
import { TPM_RC, isTpmRc } from '../tpm/errors.js';
import { publicKeySpki } from '../tpm/structures/keys.js';
import type { KeyBlob, Tpm, TpmKey } from '../tpm/tpm.js';
import { ensureDir, writeFileAtomic } from '../util/atomic-file.js';
import type { FactoryCa } from './ca.js';
import { checkDeviceSerial, issueIdevid, type IdevidProfile } from './idevid.js';
import {
  appendManifestLine,
  checkManifestWritable,
  fingerprintOf,
  manifestEkHash,
  manifestSerials,
  type ManifestLine,
} from './manifest.js';

/** Where the IDevID key is persisted by default (owner range 0x81000000-0x817FFFFF, TCG handle registry). */
export const DEFAULT_IDEVID_HANDLE = 0x81000100;

export interface ProvisionOptions {
  tpm: Tpm;
  ca: FactoryCa;
  serial: string;
  /** Manifest (JSONL) to append to. */
  manifest: string;
  /** Directory for `<serial>.pem`. */
  certDir: string;
  handle?: number;
  nvIndex?: number;
  force?: boolean;
  /** Which EK to record; default the kind of the first EK certificate found, else rsa-2048. */
  ekKind?: EkKind;
  profile?: IdevidProfile;
  now?: () => Date;
  /** Also write `<serial>.tss2.pem` next to the certificate. */
  tss2Key?: boolean;
  /** Serials known to be in the manifest (a batch reads it once); default: read the manifest. */
  knownSerials?: Map<string, number>;
  /**
   * TPM manufacturer CA files (PEM): when given, the EK must have a certificate that chains to
   * one of them, checked as a `tpm` join rule's `ek_ca_files` checks it (join/ek-trust.ts) — a
   * software TPM, or one whose EK certificate its own maker did not sign, gets no IDevID.
   */
  ekCaFiles?: readonly string[];
}

export interface ProvisionResult {
  line: ManifestLine;
  certFile: string;
  certDer: Buffer;
  /** The IDevID key as created under the SRK (for a TSS2 PRIVATE KEY file next to the handle). */
  keyBlob: KeyBlob;
  /** `<serial>.tss2.pem`, when asked for. */
  tss2File?: string;
}

const hex32 = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

export function checkHandles(handle: number, nvIndex: number | undefined): void {
  if (!Number.isInteger(handle) || handle < 0x81000000 || handle > 0x817fffff) {
    throw new SigilError(
      'bad_request',
      `persistent handle ${hex32(handle)} is outside the owner range 0x81000000-0x817fffff`,
    );
  }
  if (nvIndex !== undefined && (!Number.isInteger(nvIndex) || handleType(nvIndex) !== TPM_HT.NV_INDEX)) {
    throw new SigilError('bad_request', `NV index ${hex32(nvIndex)} is not an NV index handle (0x01xxxxxx)`);
  }
}

async function persistentKey(tpm: Tpm, handle: number): Promise<TpmKey | undefined> {
  try {
    return await tpm.readPublic(handle);
  } catch (e) {
    if (isTpmRc(e, TPM_RC.HANDLE)) return undefined;
    throw e;
  }
}

async function nvExists(tpm: Tpm, index: number): Promise<boolean> {
  try {
    await tpm.nvReadPublic(index);
    return true;
  } catch (e) {
    if (isTpmRc(e, TPM_RC.HANDLE)) return false;
    throw e;
  }
}

interface EkFacts {
  kind: EkKind;
  publicHash: string;
  certSerial?: string;
  certIssuer?: string;
}

/**
 * The EK the manifest names, checked against its certificate when there is one — and, with
 * `caFiles`, the certificate required and checked against the manufacturer CAs.
 */
async function readEk(
  tpm: Tpm,
  wanted: EkKind | undefined,
  caFiles: readonly string[] | undefined,
  now: Date,
): Promise<EkFacts> {
  const cert = await tpm.readEkCertificate(wanted);
  const kind = cert?.kind ?? wanted ?? 'rsa-2048';
  const pub = await tpm.withTransient(tpm.readEkPublic(kind), (k) => Promise.resolve(k.public));
  if (caFiles !== undefined && caFiles.length > 0) {
    if (!cert)
      throw new SigilError(
        'ek_untrusted',
        `the TPM has no ${kind} EK certificate in NV, and --ek-ca-file requires one that chains to ${caFiles.join(', ')}: a TPM without its maker's certificate (a software TPM?) gets no IDevID`,
      );
    const evidence = { ek_public: encodePublic(pub), ek_cert: Buffer.from(cert.der).toString('base64') };
    // The join's own check, as a rule that names only these CAs (no bot: nothing is joined here).
    const asRule = { name: '--ek-ca-file', bot: '', config: { ek_ca_files: [...caFiles] } };
    await checkEkForRule(readAttestedEkEvidence(evidence), asRule, now);
  }
  const facts: EkFacts = { kind, publicHash: manifestEkHash(pub) };
  if (cert) {
    const f = readCertificate(Buffer.from(cert.der), 'tpm_error', `EK certificate (NV ${hex32(cert.nvIndex)})`);
    if (!Buffer.from(f.spki).equals(publicKeySpki(pub.value))) {
      throw new SigilError(
        'tpm_error',
        `the EK certificate in NV ${hex32(cert.nvIndex)} is not for this TPM's ${kind} EK (their public keys differ)`,
      );
    }
    facts.certSerial = serialHex(Buffer.from(f.serial));
    facts.certIssuer = formatName(readName(Buffer.from(f.issuer), 'tpm_error', 'EK certificate issuer'));
  }
  return facts;
}

/**
 * Prove, as a join does, that `key` is in the TPM that holds the EK the manifest will record:
 * a fresh AK's credential is activated with that EK (TPM 2.0 Part 1 §24: only the TPM holding
 * the EK, with that AK loaded, recovers the secret), then the AK certifies the key
 * (TPM2_Certify). The factory's TPM connection is not to be taken at its word: a TCP TCTI on the
 * line is unauthenticated, and whoever sits in it could answer the EK reads from one TPM and make
 * the key in another — an IDevID would then vouch for a key outside the device (review of issue
 * #16; TCG "TPM 2.0 Keys for Device Identity and Attestation" asks the OEM CA for this proof).
 */
async function loadProvenBesideEk(tpm: Tpm, srk: TpmKey, blob: KeyBlob, kind: EkKind): Promise<TpmKey> {
  const akBlob = await tpm.createAk(srk);
  checkAk(akBlob.public);
  // At most three objects loaded at a time (swtpm and small TPMs have three transient slots):
  // SRK + AK + EK for the activation, then SRK + AK + key for the certification.
  const ak = await tpm.load(srk, akBlob);
  let key: TpmKey | undefined;
  try {
    await tpm.withTransient(tpm.readEkPublic(kind), async (ek) => {
      const challenge = credentialChallenge(ek.public, akBlob.public);
      const activated = await tpm.activateCredential(
        ak,
        ek,
        Buffer.from(challenge.credential.blob, 'base64'),
        Buffer.from(challenge.credential.secret, 'base64'),
      );
      checkActivation(challenge.secret, Buffer.from(activated).toString('base64'));
    });
    key = await tpm.load(srk, blob);
    const nonce = randomBytes(32);
    const certified = await tpm.certify(key, ak, nonce);
    const signed = parseSignedAttest(encodeSignedAttest(certified), 'factory certification', 'tpm_error');
    verifyCertify(signed, akBlob.public, key.public, nonce, 'factory certification');
    checkIdentityKey(key.public, publicKeySpki(key.public.value));
    return key;
  } catch (e) {
    if (key) await tpm.flush(key.handle).catch(() => undefined);
    // A refusal of the proof, or a TPM error in the middle of it (a spliced connection answers
    // the activation from a TPM without the EK): either way, nothing is issued.
    if (e instanceof SigilError)
      throw new SigilError(
        'tpm_error',
        `the TPM did not prove that the IDevID key is in the TPM whose EK it reported (${e.code}: ${e.message}); nothing was issued. Is the TCTI connection to the device direct?`,
      );
    throw e;
  } finally {
    await tpm.flush(ak.handle).catch(() => undefined);
  }
}

/** Rollback steps run in reverse when a later step fails. */
type Undo = () => Promise<void>;

export async function provisionDevice(o: ProvisionOptions): Promise<ProvisionResult> {
  const { tpm, ca, serial } = o;
  const handle = o.handle ?? DEFAULT_IDEVID_HANDLE;
  checkDeviceSerial(serial);
  checkHandles(handle, o.nvIndex);
  const now = (o.now ?? (() => new Date()))();

  if (o.knownSerials === undefined) checkManifestWritable(o.manifest);
  const known = o.knownSerials ?? manifestSerials(o.manifest);
  const line = known.get(serial);
  if (line !== undefined && !o.force) {
    throw new SigilError(
      'device_already_provisioned',
      `device ${serial} is already in ${o.manifest}${line > 0 ? ` (line ${line})` : ''}; re-provision it with --force (and revoke its old IDevID)`,
    );
  }
  const existing = await persistentKey(tpm, handle);
  if (existing && !o.force) {
    throw new SigilError(
      'device_already_provisioned',
      `the TPM already holds a key at ${hex32(handle)}; re-provision with --force, or pick another --handle`,
    );
  }
  const nvTaken = o.nvIndex !== undefined && (await nvExists(tpm, o.nvIndex));
  if (nvTaken && !o.force)
    throw new SigilError(
      'device_already_provisioned',
      `NV index ${hex32(o.nvIndex!)} is already defined; re-provision with --force`,
    );

  const ek = await readEk(tpm, o.ekKind, o.ekCaFiles, now);

  // The key: created and loaded under a transient SRK, both flushed whatever happens — and proven
  // to be in the TPM whose EK the manifest records, before the CA signs anything for it.
  const created = await tpm.withTransient(tpm.createSrk(), async (srk) => {
    const blob = await tpm.create(srk, identityKeyTemplate());
    return { blob, key: await loadProvenBesideEk(tpm, srk, blob, ek.kind) };
  });
  const undo: Undo[] = [];
  try {
    const spki = publicKeySpki(created.blob.public.value);
    const idevid = await issueIdevid(ca, serial, spki, o.profile, now);

    if (existing) await tpm.evict(existing);
    const persisted = await tpm.persist(created.key, handle);
    undo.push(() => tpm.evict(persisted));
    await tpm.flush(created.key.handle).catch(() => undefined);

    if (o.nvIndex !== undefined) {
      const index = o.nvIndex;
      if (nvTaken) await tpm.nvUndefine(index);
      // Readable with the index's empty authValue (AUTHREAD) so any process on the device can
      // fetch its certificate; writable only by the owner.
      await tpm.nvDefine(index, idevid.der.length, {
        attributes: TPM_NT.ORDINARY | TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA,
      });
      undo.push(() => tpm.nvUndefine(index));
      await tpm.nvWrite(index, idevid.der);
    }

    ensureDir(o.certDir, 0o755);
    const certFile = join(o.certDir, `${serial}.pem`);
    writeFileAtomic(certFile, [idevid.der, ...ca.chainDers].map((d) => toPem('CERTIFICATE', d)).join(''), {
      mode: 0o644,
    });
    undo.push(() => Promise.resolve(rmSync(certFile, { force: true })));
    const tss2File = o.tss2Key ? join(o.certDir, `${serial}.tss2.pem`) : undefined;
    if (tss2File) {
      // No secret inside (the private part is sealed to this TPM's SRK), but it is a key file: 0600.
      writeFileAtomic(tss2File, writeTss2Pem({ parent: TPM_RH.OWNER, blob: created.blob }), { mode: 0o600 });
      undo.push(() => Promise.resolve(rmSync(tss2File, { force: true })));
    }

    const entry: ManifestLine = {
      serial,
      ek_public_hash: ek.publicHash,
      ek_kind: ek.kind,
      ...(ek.certSerial !== undefined ? { ek_cert_serial: ek.certSerial, ek_cert_issuer: ek.certIssuer! } : {}),
      idevid_fingerprint: fingerprintOf(idevid.der),
      idevid_serial: idevid.serialHex,
      idevid_subject: idevid.subject,
      idevid_not_after: idevid.notAfter.toISOString(),
      persistent_handle: hex32(handle),
      ...(o.nvIndex !== undefined ? { nv_index: hex32(o.nvIndex) } : {}),
      provisioned_at: now.toISOString(),
    };
    appendManifestLine(o.manifest, entry);
    known.set(serial, 0);
    return { line: entry, certFile, certDer: idevid.der, keyBlob: created.blob, ...(tss2File ? { tss2File } : {}) };
  } catch (e) {
    await tpm.flush(created.key.handle).catch(() => undefined);
    for (const u of undo.reverse()) await u().catch(() => undefined);
    throw e;
  }
}
