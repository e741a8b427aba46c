/**
 * The TPM key backend: an ECDSA P-256 identity key created inside the TPM under the standard
 * SRK (owner hierarchy, the primary tpm2-openssl derives for a TSS2 key whose parent is
 * TPM_RH_OWNER), never exportable. What the agent stores is the key's two blobs — TPM2B_PUBLIC
 * and TPM2B_PRIVATE, the private part sealed to the SRK by the TPM — in a {@link TpmKeyRef};
 * they are useless without this TPM, which is why the reference may sit in the agent's SQLite
 * database and why the same blobs make the `TSS2 PRIVATE KEY` file workloads load through
 * OpenSSL's tpm2 provider (./tss2-pem.ts).
 *
 * A signature is: SHA-256 of the data here → open the TPM → the key (ContextLoad of its saved
 * context; the first time SRK + Load + ContextSave) → TPM2_Sign(ECDSA, SHA-256) → flush →
 * close (./tpm-access.ts explains the per-operation connection and the saved contexts).
 * The keys Sigil creates have the attributes
 *
 *   fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA | sign   (0x00040472)
 *
 * fixedTPM + fixedParent + sensitiveDataOrigin are what TPM2_Certify lets the issuer verify
 * (the key was generated in this TPM and cannot be duplicated out of it). noDA: the key has no
 * authValue to guess, so dictionary-attack protection guards nothing — but without noDA every
 * unorderly power loss after using the key counts as a failed authorization, and an edge
 * gateway that loses power three times would find its identity key locked out
 * (TPM_RC_LOCKOUT; observed with swtpm). Restricted is clear: the key signs CSRs and JWS
 * envelopes, not only TPM-made structures.
 */
import { createHash } from 'node:crypto';
import { SigilError } from '../errors.js';
import { TPM_ALG, TPM_ECC_CURVE, TPMA_OBJECT } from '../tpm/constants.js';
import { eccSignatureToDer } from '../tpm/crypto/signature.js';
import { tpm2bPrivate } from '../tpm/structures/basic.js';
import { marshal, unmarshal } from '../tpm/structures/codec.js';
import { publicKeySpki } from '../tpm/structures/keys.js';
import { hasAttributes, tpm2bPublic, type EccPublic, type Tpm2bPublic } from '../tpm/structures/public.js';
import { isEccSignature } from '../tpm/structures/signature.js';
import { signingKeyTemplateEccP256 } from '../tpm/templates.js';
import type { KeyBlob, Tpm, TpmKey } from '../tpm/tpm.js';
import type { Signer } from './signer.js';
import { loadSaved, OWNER_PARENT, type SavedObject, type TpmAccess } from './tpm-access.js';
import { writeTss2Pem } from './tss2-pem.js';

/** Where a TPM identity key lives: a TCTI string, its parent, and its blobs (base64 of the TPM2B encodings). */
export interface TpmKeyRef {
  storage: 'tpm';
  /** tpm2-tools TCTI string, e.g. `swtpm:host=127.0.0.1,port=2321` or `device:/dev/tpmrm0`. */
  tcti: string;
  /** 0x40000001 (TPM_RH_OWNER: the standard SRK) or a persistent handle. */
  parent: number;
  /** TPM2B_PUBLIC, size prefix included. */
  publicB64: string;
  /** TPM2B_PRIVATE, size prefix included. */
  privateB64: string;
}

/** The identity key template: templates.ts signingKeyTemplateEccP256 plus noDA (see the file comment). */
export function identityKeyTemplate(): EccPublic {
  const t = signingKeyTemplateEccP256();
  return { ...t, objectAttributes: t.objectAttributes | TPMA_OBJECT.noDA };
}

/**
 * What a stored key must be for this signer (P-256, unrestricted, sign-only, ECDSA-SHA-256 or
 * any scheme). Whether it is TPM-resident is the issuer's to check, through TPM2_Certify.
 */
function checkIdentityPublic(pub: Tpm2bPublic): void {
  const v = pub.value;
  if (v.type !== TPM_ALG.ECC || v.parameters.curveId !== TPM_ECC_CURVE.NIST_P256) {
    throw new SigilError('unsupported_key', 'TPM identity keys must be ECC NIST P-256');
  }
  if (
    !hasAttributes(v, TPMA_OBJECT.sign) ||
    (v.objectAttributes & (TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt)) !== 0
  ) {
    throw new SigilError('unsupported_key', 'the TPM key is not an unrestricted signing-only key');
  }
  const scheme = v.parameters.scheme;
  if (scheme.scheme !== TPM_ALG.NULL && !(scheme.scheme === TPM_ALG.ECDSA && scheme.hashAlg === TPM_ALG.SHA256)) {
    throw new SigilError('unsupported_key', 'the TPM key is bound to a signing scheme other than ECDSA with SHA-256');
  }
}

export class TpmSigner implements Signer {
  readonly storage = 'tpm' as const;
  readonly exportable = false as const;
  readonly algorithm = 'ES256' as const;
  readonly ref: TpmKeyRef;
  readonly blob: KeyBlob;
  readonly #spki: Buffer;
  /** The loaded key's saved context: later operations need one ContextLoad instead of parent + Load. */
  readonly #saved: SavedObject = {};
  /** The TPM the key lives in, as the holder of this signer reaches it. */
  readonly access: TpmAccess;

  private constructor(ref: TpmKeyRef, blob: KeyBlob, access: TpmAccess) {
    checkIdentityPublic(blob.public);
    this.ref = ref;
    this.blob = blob;
    this.access = access;
    this.#spki = publicKeySpki(blob.public.value);
  }

  /**
   * A new identity key made under the SRK by the TPM the holder reaches through `access`.
   * `template` exists for tests that need a key the issuer must refuse (e.g. without fixedTPM);
   * the default is {@link identityKeyTemplate}.
   */
  static async create(access: TpmAccess, opts: { template?: EccPublic } = {}): Promise<TpmSigner> {
    const blob = await access.run((tpm) => TpmSigner.createWith(tpm, access, opts.template));
    return TpmSigner.fromBlob(access, blob);
  }

  /** Create under the SRK on an open TPM (the join agent makes its keys in one connection). */
  static createWith(tpm: Tpm, access: TpmAccess, template: EccPublic = identityKeyTemplate()): Promise<KeyBlob> {
    return access.withParent(tpm, OWNER_PARENT, (srk) => tpm.create(srk, template));
  }

  static fromBlob(access: TpmAccess, blob: KeyBlob, parent: number = OWNER_PARENT): TpmSigner {
    const ref: TpmKeyRef = {
      storage: 'tpm',
      tcti: access.tcti,
      parent,
      publicB64: Buffer.from(marshal(tpm2bPublic, blob.public)).toString('base64'),
      privateB64: Buffer.from(marshal(tpm2bPrivate, blob.private)).toString('base64'),
    };
    return new TpmSigner(ref, blob, access);
  }

  /**
   * Rebuild the signer from a stored reference; malformed blobs are `config_invalid`. `access`
   * is the holder's access to the TPM at `ref.tcti` (the agent's, shared with everything else
   * it runs on that TPM).
   */
  static fromRef(ref: TpmKeyRef, access: TpmAccess): TpmSigner {
    if (access.tcti !== ref.tcti)
      throw new TypeError(`TpmSigner.fromRef: the TpmAccess is for ${access.tcti}, the key for ${ref.tcti}`);
    return new TpmSigner({ ...ref }, blobOf(ref), access);
  }

  publicKeySpki(): Buffer {
    return Buffer.from(this.#spki);
  }

  /** SHA-256 here, ECDSA in the TPM; the signature comes back DER-encoded (RFC 5480 §2.2.3). */
  async sign(data: Buffer): Promise<Buffer> {
    const digest = createHash('sha256').update(data).digest();
    const sig = await this.withKey((tpm, key) =>
      tpm.sign(key, digest, { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 }),
    ).catch((err: unknown) => {
      throw asKeystoreError(err);
    });
    if (!isEccSignature(sig)) throw new SigilError('keystore_error', 'the TPM returned a non-ECDSA signature');
    return eccSignatureToDer(sig);
  }

  /**
   * Load the key on an open TPM, run `fn`, flush it. The parent is flushed as soon as the key
   * is loaded: swtpm holds three transient objects, and a certification needs the AK too.
   */
  loadWith<T>(tpm: Tpm, fn: (key: TpmKey) => Promise<T>): Promise<T> {
    const load = (): Promise<TpmKey> =>
      this.access.withParent(tpm, this.ref.parent, (parent) => tpm.load(parent, this.blob));
    return tpm.withTransient(loadSaved(tpm, this.#saved, load), fn);
  }

  /** Open the TPM, load the key, run `fn`, flush and close. */
  withKey<T>(fn: (tpm: Tpm, key: TpmKey) => Promise<T>): Promise<T> {
    return this.access.run((tpm) => this.loadWith(tpm, (key) => fn(tpm, key)));
  }

  /** The `TSS2 PRIVATE KEY` PEM of this key, for OpenSSL's tpm2 provider. */
  toTss2Pem(): string {
    return writeTss2Pem({ parent: this.ref.parent, blob: this.blob });
  }

  /** Nothing is held between operations. */
  close(): void {}
}

function blobOf(ref: TpmKeyRef): KeyBlob {
  try {
    return {
      public: unmarshal(tpm2bPublic, Buffer.from(ref.publicB64, 'base64')),
      private: unmarshal(tpm2bPrivate, Buffer.from(ref.privateB64, 'base64')),
    };
  } catch (err) {
    throw new SigilError('config_invalid', 'stored TPM key reference: the key blobs do not parse', { cause: err });
  }
}

/**
 * The `TSS2 PRIVATE KEY` PEM of a stored reference (the identity output's svid.tss2.pem). Only
 * the blobs are parsed and checked; no TPM command is sent, so no access to the TPM is needed.
 */
export function tss2PemOfRef(ref: TpmKeyRef): string {
  const blob = blobOf(ref);
  checkIdentityPublic(blob.public);
  return writeTss2Pem({ parent: ref.parent, blob });
}

/** TPM failures while using a key are key-store failures for the agent (retry vs give up). */
function asKeystoreError(err: unknown): unknown {
  if (err instanceof SigilError && (err.code === 'tpm_unavailable' || err.code === 'tpm_error')) {
    return new SigilError(
      err.code === 'tpm_unavailable' ? 'keystore_unavailable' : 'keystore_error',
      `TPM identity key: ${err.message}`,
      { cause: err },
    );
  }
  return err;
}
