/**
 * The PKCS#11 key backend (pkcs11js): keys generated on, and never leaving, a token (an HSM, a
 * secure element, SoftHSM2 in tests). Private keys are created with CKA_SENSITIVE=true and
 * CKA_EXTRACTABLE=false (PKCS#11 v2.40 §4.9); `exportable` is not assumed from that template but
 * read back from the token's attributes whenever a key is opened or generated.
 *
 * One signer holds one session (logged in as the user) for its life; if the token reports the
 * session gone (CKR_SESSION_HANDLE_INVALID / CLOSED, e.g. after a token reset) the signer
 * opens a new one, logs in again, finds its key again and retries once. `close()` closes the
 * session and, with the last signer on the module, C_Finalize.
 *
 * Signatures: ECDSA keys sign SHA-256/384 digests with CKM_ECDSA and the raw r||s is turned
 * into DER; RSA keys (device keys only) use CKM_SHA256_RSA_PKCS_PSS or CKM_SHA256_RSA_PKCS.
 */
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { SigilError } from '../errors.js';
import { bitString, oid, sequence } from '../pki/der.js';
import { OID } from '../pki/oids.js';
import { rawEcdsaToDer } from './ecdsa.js';
import { PSS_SALT_LENGTH, type RsaSignatureAlgorithm } from './pem-key.js';
import {
  acquireModule,
  ckrCode,
  findSlot,
  isModuleThreaded,
  mapError,
  openSession,
  pkcs11js,
  releaseModule,
  type Handle,
  type Pkcs11Lib,
  type Pkcs11Template,
  type RsaPSS,
} from './pkcs11/module.js';
import type { DeviceSignatureAlgorithm, DeviceSigner } from './signer.js';

/** Where a PKCS#11 key lives. Serialisable; never contains the PIN, only where to read it. */
export interface Pkcs11KeyRef {
  storage: 'pkcs11';
  /** Absolute path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  module: string;
  tokenLabel: string;
  /** CKA_LABEL of the key pair; at least one of keyLabel / keyId. */
  keyLabel?: string;
  /** CKA_ID of the key pair, lowercase hex. */
  keyId?: string;
  /** File holding the user PIN (one line), or… */
  pinFile?: string;
  /** …the name of the environment variable holding it. */
  pinEnv?: string;
}

const EC_PARAMS: Record<string, { oid: string; hash: 'sha256' | 'sha384'; alg: 'ES256' | 'ES384'; size: number }> = {
  [oid(OID.secp256r1).toString('hex')]: { oid: OID.secp256r1, hash: 'sha256', alg: 'ES256', size: 32 },
  [oid(OID.secp384r1).toString('hex')]: { oid: OID.secp384r1, hash: 'sha384', alg: 'ES384', size: 48 },
};

/** Session errors after which a fresh session (and login) is worth one retry. */
const STALE_SESSION = [
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_OBJECT_HANDLE_INVALID',
  'CKR_KEY_HANDLE_INVALID',
];

interface KeyInfo {
  algorithm: DeviceSignatureAlgorithm;
  spki: Buffer;
  /** ECDSA coordinate size or RSA modulus size in bytes: the raw signature buffer size. */
  sigSize: number;
  /** What the token says about the private key (see {@link isExportable}). */
  exportable: boolean;
}

export class Pkcs11Signer implements DeviceSigner {
  readonly storage = 'pkcs11' as const;
  /** From the token: CKA_EXTRACTABLE or not CKA_SENSITIVE. False for every key Sigil generates. */
  readonly exportable: boolean;
  readonly algorithm: DeviceSignatureAlgorithm;
  readonly ref: Pkcs11KeyRef;
  readonly #lib: Pkcs11Lib;
  readonly #info: KeyInfo;
  #session: Handle | undefined;
  #key: Handle;
  #closed = false;
  /** The tail of this signer's queue of signatures (see {@link sign}). */
  #queue: Promise<unknown> = Promise.resolve();
  /** A signature is under way: close() leaves the session to it. */
  #busy = false;
  #released = false;

  private constructor(ref: Pkcs11KeyRef, lib: Pkcs11Lib, session: Handle, key: Handle, info: KeyInfo) {
    this.ref = ref;
    this.#lib = lib;
    this.#session = session;
    this.#key = key;
    this.#info = info;
    this.algorithm = info.algorithm;
    this.exportable = info.exportable;
  }

  /** Open an existing key pair on the token. `rsa` picks the scheme for an RSA key (default PS256). */
  static open(ref: Pkcs11KeyRef, opts: { rsa?: RsaSignatureAlgorithm } = {}): Pkcs11Signer {
    checkRef(ref);
    const lib = acquireModule(ref.module);
    let session: Handle | undefined;
    try {
      session = openSession(ref.module, lib, findSlot(lib, ref.tokenLabel), ref, ref.tokenLabel);
      const key = findKey(lib, session, ref, pkcs11js().CKO_PRIVATE_KEY);
      const info = keyInfo(lib, session, ref, key, opts.rsa ?? 'PS256');
      return new Pkcs11Signer(ref, lib, session, key, info);
    } catch (err) {
      if (session !== undefined) closeQuietly(lib, session);
      releaseModule(ref.module);
      throw mapError(err, `opening key ${describe(ref)}`);
    }
  }

  /**
   * Generate an ECDSA key pair on the token (CKA_TOKEN, CKA_SENSITIVE, not CKA_EXTRACTABLE),
   * labelled `keyLabel` (default `sigil-<random>`) with a random 16-byte CKA_ID unless given.
   * On the calling thread: for tools (`sigil factory`); a daemon uses {@link generateAsync}.
   */
  static generate(opts: Pkcs11GenerateOptions): Pkcs11Signer {
    const g = Pkcs11Signer.#startGenerate(opts);
    try {
      const pair = g.lib.C_GenerateKeyPair(g.session, g.mechanism, g.publicTemplate, g.privateTemplate);
      return g.finish(pair.privateKey);
    } catch (err) {
      throw g.fail(err);
    }
  }

  /**
   * {@link generate}, with C_GenerateKeyPair on a libuv worker thread when the module allows
   * threads: on a smart card it can take seconds, and the agent rotates its key at renewals.
   */
  static async generateAsync(opts: Pkcs11GenerateOptions): Promise<Pkcs11Signer> {
    const g = Pkcs11Signer.#startGenerate(opts);
    try {
      const pair = isModuleThreaded(g.ref.module)
        ? await g.lib.C_GenerateKeyPairAsync(g.session, g.mechanism, g.publicTemplate, g.privateTemplate)
        : g.lib.C_GenerateKeyPair(g.session, g.mechanism, g.publicTemplate, g.privateTemplate);
      return g.finish(pair.privateKey);
    } catch (err) {
      throw g.fail(err);
    }
  }

  /**
   * Destroy the key pair `ref` names (private and public objects matching its label and id).
   * Returns false when the token holds no such object — already removed, which is what the
   * caller wanted — so removing twice (after a crash between the two steps) is harmless.
   */
  static remove(ref: Pkcs11KeyRef): boolean {
    checkRef(ref);
    const P = pkcs11js();
    const lib = acquireModule(ref.module);
    let session: Handle | undefined;
    try {
      session = openSession(ref.module, lib, findSlot(lib, ref.tokenLabel), ref, ref.tokenLabel);
      let destroyed = 0;
      for (const cls of [P.CKO_PRIVATE_KEY, P.CKO_PUBLIC_KEY]) {
        for (const h of findObjects(lib, session, ref, cls, 16)) {
          lib.C_DestroyObject(session, h);
          destroyed++;
        }
      }
      return destroyed > 0;
    } catch (err) {
      throw mapError(err, `deleting key ${describe(ref)}`);
    } finally {
      if (session !== undefined) closeQuietly(lib, session);
      releaseModule(ref.module);
    }
  }

  /**
   * Open a session for a key generation and build its templates: the part of {@link generate}
   * and {@link generateAsync} that runs on the calling thread. `finish` wraps the new private key
   * in a signer on that session; `fail` closes it.
   */
  static #startGenerate(opts: Pkcs11GenerateOptions): Generation {
    const P = pkcs11js();
    const ref: Pkcs11KeyRef = {
      storage: 'pkcs11',
      module: opts.module,
      tokenLabel: opts.tokenLabel,
      keyLabel: opts.keyLabel ?? `sigil-${randomBytes(6).toString('hex')}`,
      keyId: opts.keyId ?? randomBytes(16).toString('hex'),
      ...(opts.pinFile !== undefined ? { pinFile: opts.pinFile } : {}),
      ...(opts.pinEnv !== undefined ? { pinEnv: opts.pinEnv } : {}),
    };
    checkRef(ref);
    const params = oid(opts.curve === 'P-384' ? OID.secp384r1 : OID.secp256r1);
    const lib = acquireModule(ref.module);
    let session: Handle | undefined;
    const fail = (err: unknown): unknown => {
      if (session !== undefined) closeQuietly(lib, session);
      releaseModule(ref.module);
      return mapError(err, `generating a key on token "${ref.tokenLabel}"`);
    };
    try {
      session = openSession(ref.module, lib, findSlot(lib, ref.tokenLabel), ref, ref.tokenLabel);
    } catch (err) {
      throw fail(err);
    }
    const opened = session;
    const common = [
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_KEY_TYPE, value: P.CKK_EC },
      { type: P.CKA_LABEL, value: ref.keyLabel! },
      { type: P.CKA_ID, value: Buffer.from(ref.keyId!, 'hex') },
    ];
    return {
      ref,
      lib,
      session: opened,
      mechanism: { mechanism: P.CKM_EC_KEY_PAIR_GEN },
      publicTemplate: [
        ...common,
        { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
        { type: P.CKA_VERIFY, value: true },
        { type: P.CKA_EC_PARAMS, value: params },
      ],
      privateTemplate: [
        ...common,
        { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
        { type: P.CKA_PRIVATE, value: true },
        { type: P.CKA_SENSITIVE, value: true },
        { type: P.CKA_EXTRACTABLE, value: false },
        { type: P.CKA_SIGN, value: true },
      ],
      finish: (privateKey) =>
        new Pkcs11Signer(ref, lib, opened, privateKey, keyInfo(lib, opened, ref, privateKey, 'PS256')),
      fail,
    };
  }

  publicKeySpki(): Buffer {
    return Buffer.from(this.#info.spki);
  }

  /**
   * Sign on the token. The C_Sign call itself runs on a libuv worker thread when the module was
   * initialised for threads (module.ts `initialize`): a network HSM or a smart card takes tens to
   * hundreds of milliseconds per signature, and on the event loop that would stall every timer,
   * renewal and Workload API client of the agent meanwhile. Calls on this signer are queued, one at
   * a time: a session has at most one active signing operation (PKCS#11 v2.40 §5.12, C_SignInit:
   * CKR_OPERATION_ACTIVE).
   */
  sign(data: Buffer): Promise<Buffer> {
    const run = this.#queue.then(() => this.#signRetrying(data));
    this.#queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  async #signRetrying(data: Buffer): Promise<Buffer> {
    if (this.#closed) throw new TypeError('Pkcs11Signer: used after close()');
    this.#busy = true;
    try {
      try {
        if (this.#session === undefined) this.#reopen();
        return await this.#signOnce(this.#session!, data);
      } catch (err) {
        if (err instanceof SigilError || !isStaleSession(err) || this.#closed) throw err;
        this.#reopen();
        return await this.#signOnce(this.#session!, data);
      }
    } catch (err) {
      throw mapError(err, `signing with key ${describe(this.ref)}`);
    } finally {
      this.#busy = false;
      // close() during the signature left the session for us to close.
      if (this.#closed) this.#release();
    }
  }

  async #signOnce(session: Handle, data: Buffer): Promise<Buffer> {
    const P = pkcs11js();
    const lib = this.#lib;
    const threaded = isModuleThreaded(this.ref.module);
    const call = (input: Buffer, out: Buffer): Buffer | Promise<Buffer> =>
      threaded ? lib.C_SignAsync(session, input, out) : lib.C_Sign(session, input, out);
    switch (this.algorithm) {
      case 'ES256':
      case 'ES384': {
        // CKM_ECDSA signs a digest we compute (PKCS#11 v2.40 §2.3.6); the token returns r||s.
        const digest = createHash(this.algorithm === 'ES256' ? 'sha256' : 'sha384')
          .update(data)
          .digest();
        lib.C_SignInit(session, { mechanism: P.CKM_ECDSA }, this.#key);
        return rawEcdsaToDer(await call(digest, Buffer.alloc(2 * this.#info.sigSize)));
      }
      case 'RS256':
        lib.C_SignInit(session, { mechanism: P.CKM_SHA256_RSA_PKCS }, this.#key);
        return Buffer.from(await call(data, Buffer.alloc(this.#info.sigSize)));
      case 'PS256': {
        const pss: RsaPSS = {
          type: P.CK_PARAMS_RSA_PSS,
          hashAlg: P.CKM_SHA256,
          mgf: P.CKG_MGF1_SHA256,
          saltLen: PSS_SALT_LENGTH,
        };
        lib.C_SignInit(session, { mechanism: P.CKM_SHA256_RSA_PKCS_PSS, parameter: pss }, this.#key);
        return Buffer.from(await call(data, Buffer.alloc(this.#info.sigSize)));
      }
    }
  }

  #reopen(): void {
    if (this.#session !== undefined) closeQuietly(this.#lib, this.#session);
    this.#session = undefined;
    const session = openSession(
      this.ref.module,
      this.#lib,
      findSlot(this.#lib, this.ref.tokenLabel),
      this.ref,
      this.ref.tokenLabel,
    );
    this.#session = session;
    this.#key = findKey(this.#lib, session, this.ref, pkcs11js().CKO_PRIVATE_KEY);
  }

  /**
   * Close the session and release the module. A signature under way on a worker thread keeps
   * both until it returns (closing a session in the middle of its C_Sign is undefined behaviour
   * in a module); the ones queued behind it are refused.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#busy) this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#session !== undefined) closeQuietly(this.#lib, this.#session);
    this.#session = undefined;
    releaseModule(this.ref.module);
  }
}

export type Pkcs11GenerateOptions = Omit<Pkcs11KeyRef, 'storage'> & { curve?: 'P-256' | 'P-384' };

/** A key generation under way: the session it runs on, its templates, and how it ends. */
interface Generation {
  ref: Pkcs11KeyRef;
  lib: Pkcs11Lib;
  session: Handle;
  mechanism: { mechanism: number };
  publicTemplate: Pkcs11Template;
  privateTemplate: Pkcs11Template;
  finish(privateKey: Handle): Pkcs11Signer;
  /** Close the session, release the module, and say what failed. */
  fail(err: unknown): unknown;
}

function checkRef(ref: Pkcs11KeyRef): void {
  if (!ref.module || !ref.tokenLabel)
    throw new SigilError('config_invalid', 'a PKCS#11 key needs module and token label');
  if (ref.keyLabel === undefined && ref.keyId === undefined)
    throw new SigilError('config_invalid', 'a PKCS#11 key needs a key label (object=) or id');
  if (ref.keyId !== undefined && !/^([0-9a-f]{2})+$/.test(ref.keyId))
    throw new SigilError('config_invalid', 'a PKCS#11 key id must be lowercase hex bytes');
}

function describe(ref: Pkcs11KeyRef): string {
  return `${ref.keyLabel !== undefined ? `"${ref.keyLabel}"` : `id ${ref.keyId}`} on token "${ref.tokenLabel}"`;
}

function isStaleSession(err: unknown): boolean {
  const P = pkcs11js();
  const code = ckrCode(err);
  return code !== undefined && STALE_SESSION.some((n) => (P as unknown as Record<string, number>)[n] === code);
}

function closeQuietly(lib: Pkcs11Lib, session: Handle): void {
  try {
    lib.C_CloseSession(session);
  } catch {
    // The session may already be gone with the token.
  }
}

function findObjects(lib: Pkcs11Lib, session: Handle, ref: Pkcs11KeyRef, cls: number, max: number): Handle[] {
  const P = pkcs11js();
  const template: Pkcs11Template = [{ type: P.CKA_CLASS, value: cls }];
  if (ref.keyLabel !== undefined) template.push({ type: P.CKA_LABEL, value: ref.keyLabel });
  if (ref.keyId !== undefined) template.push({ type: P.CKA_ID, value: Buffer.from(ref.keyId, 'hex') });
  lib.C_FindObjectsInit(session, template);
  try {
    return lib.C_FindObjects(session, max);
  } finally {
    lib.C_FindObjectsFinal(session);
  }
}

function findKey(lib: Pkcs11Lib, session: Handle, ref: Pkcs11KeyRef, cls: number): Handle {
  const found = findObjects(lib, session, ref, cls, 2);
  const kind = cls === pkcs11js().CKO_PRIVATE_KEY ? 'private' : 'public';
  if (found.length === 0) throw new SigilError('config_invalid', `no ${kind} key ${describe(ref)}`);
  if (found.length > 1)
    throw new SigilError('config_invalid', `more than one ${kind} key ${describe(ref)}; give both a label and an id`);
  return found[0]!;
}

function ulong(buf: Buffer): number {
  if (buf.length === 8) return Number(buf.readBigUInt64LE());
  if (buf.length === 4) return buf.readUInt32LE();
  throw new SigilError('keystore_error', `unexpected CK_ULONG of ${buf.length} bytes`);
}

function attribute(lib: Pkcs11Lib, session: Handle, obj: Handle, type: number): Buffer {
  return lib.C_GetAttributeValue(session, obj, [{ type }])[0]!.value;
}

/**
 * Whether the private key can leave the token: CKA_EXTRACTABLE (it may be wrapped out) or not
 * CKA_SENSITIVE (CKA_VALUE is readable in plaintext) — PKCS#11 v2.40 §4.9, table 34. Both are
 * public attributes of the key object. A token that will not say counts as exportable: nothing
 * proves otherwise.
 */
function isExportable(lib: Pkcs11Lib, session: Handle, priv: Handle): boolean {
  const P = pkcs11js();
  try {
    const sensitive = attribute(lib, session, priv, P.CKA_SENSITIVE);
    const extractable = attribute(lib, session, priv, P.CKA_EXTRACTABLE);
    // CK_BBOOL is one byte, CK_FALSE = 0.
    return sensitive[0] === 0 || extractable[0] !== 0;
  } catch {
    return true;
  }
}

/** The key's algorithm and SubjectPublicKeyInfo, from the token's public attributes. */
function keyInfo(
  lib: Pkcs11Lib,
  session: Handle,
  ref: Pkcs11KeyRef,
  priv: Handle,
  rsa: RsaSignatureAlgorithm,
): KeyInfo {
  const P = pkcs11js();
  const type = ulong(attribute(lib, session, priv, P.CKA_KEY_TYPE));
  if (type === P.CKK_EC) {
    const params = attribute(lib, session, priv, P.CKA_EC_PARAMS);
    const curve = EC_PARAMS[params.toString('hex')];
    if (!curve) throw new SigilError('unsupported_key', `PKCS#11 key ${describe(ref)}: EC curve is not P-256 or P-384`);
    const point = ecPoint(
      attribute(lib, session, findKey(lib, session, ref, P.CKO_PUBLIC_KEY), P.CKA_EC_POINT),
      curve.size,
    );
    const spki = sequence(sequence(oid(OID.ecPublicKey), oid(curve.oid)), bitString(point));
    return { algorithm: curve.alg, spki, sigSize: curve.size, exportable: isExportable(lib, session, priv) };
  }
  if (type === P.CKK_RSA) {
    const n = attribute(lib, session, priv, P.CKA_MODULUS);
    const e = attribute(lib, session, priv, P.CKA_PUBLIC_EXPONENT);
    const pub = createPublicKey({
      key: { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') },
      format: 'jwk',
    });
    const bits = pub.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 2048)
      throw new SigilError('unsupported_key', `PKCS#11 key ${describe(ref)}: RSA key of ${bits} bits is too small`);
    return {
      algorithm: rsa,
      spki: pub.export({ type: 'spki', format: 'der' }),
      sigSize: Math.ceil(bits / 8),
      exportable: isExportable(lib, session, priv),
    };
  }
  throw new SigilError(
    'unsupported_key',
    `PKCS#11 key ${describe(ref)}: key type 0x${type.toString(16)} is not EC or RSA`,
  );
}

/**
 * CKA_EC_POINT is the DER OCTET STRING wrapping the uncompressed point (PKCS#11 v2.40 §2.3.3);
 * some tokens return the bare point. Length tells them apart: 1 + 2·size bytes is bare.
 */
function ecPoint(value: Buffer, size: number): Buffer {
  const bare = 1 + 2 * size;
  if (value.length === bare && value[0] === 0x04) return value;
  if (value.length === bare + 2 && value[0] === 0x04 && value[1] === bare && value[2] === 0x04)
    return value.subarray(2);
  throw new SigilError('keystore_error', 'CKA_EC_POINT is not an uncompressed point');
}
