/**
 * The Tpm facade: one transport, the generic `run`, and the handful of operations the agent's
 * join, renewal and key store need. Every transient object and session it creates is flushed
 * before the method returns, also on error — swtpm and TPMs without a resource manager run
 * out of slots (TPM_RC_OBJECT_MEMORY) otherwise.
 */
import type { AnyCommand, CommandArgs, CommandResult } from './command.js';
import { GetCapability, GetRandom } from './commands/capability.js';
import { FlushContext, EvictControl } from './commands/context.js';
import { ActivateCredential, Create, CreatePrimary, Load, LoadExternal, ReadPublic } from './commands/object.js';
import { Certify, Quote, Sign } from './commands/attestation.js';
import { PCR_Extend, PCR_Read } from './commands/pcr.js';
import { TPM_ALG, TPM_CAP, TPM_HT, TPM_PT, TPM_RH, TPM_SU, handleType } from './constants.js';
import { Startup } from './commands/startup.js';
import { TPM_RC, isTpmRc } from './errors.js';
import { digestSize } from './crypto/hash.js';
import { authorizeEk, readEkCertificate, readEkPublic } from './ek.js';
import type { EkCertificate, EkKind } from './ek.js';
import { execute } from './execute.js';
import type { ExecuteOptions } from './execute.js';
import type { TpmFacade, TpmKey } from './facade.js';
import { nvDefine, nvRead, nvReadPublic, nvUndefine, nvWrite } from './nv.js';
import type { NvDefineOptions, NvIndexInfo } from './nv.js';
import type { AuthSession } from './session.js';
import { startSession } from './start-session.js';
import type { StartSessionOptions } from './start-session.js';
import type { Tpm2bAttest } from './structures/attest.js';
import type { TpmtHa } from './structures/basic.js';
import type { Sized } from './structures/codec.js';
import { pcrSelection, selectedPcrs } from './structures/pcr.js';
import type { PcrBankSelection, TpmlPcrSelection } from './structures/pcr.js';
import type { Tpm2bPublic, TpmtPublic } from './structures/public.js';
import { SCHEME_NULL } from './structures/schemes.js';
import type { TpmtSigScheme } from './structures/schemes.js';
import type { TpmtSignature } from './structures/signature.js';
import { NULL_HASHCHECK } from './structures/tickets.js';
import { akTemplateEccP256, signingKeyTemplateEccP256, srkTemplateEccP256 } from './templates.js';
import { openTransport } from './transport/open.js';
import type { OpenOptions } from './transport/open.js';
import type { TpmTransport } from './transport/transport.js';

// TpmKey's home is facade.ts, where nv.ts and ek.ts reach it without importing this file (no cycle);
// re-exported so `import type { TpmKey } from './tpm.js'` keeps working.
export type { TpmKey } from './facade.js';

/** A key as Create returns it: what an agent stores (a TSS2 PRIVATE KEY holds these two). */
export interface KeyBlob {
  /** TPM2B_PRIVATE content, sealed to the parent. */
  private: Uint8Array;
  public: Tpm2bPublic;
}

export interface SignedAttestation {
  /** TPMS_ATTEST; `.bytes` are what `signature` covers. */
  attest: Tpm2bAttest;
  signature: TpmtSignature;
}

export interface PcrValue {
  hash: number;
  pcr: number;
  digest: Uint8Array;
}

const EMPTY = new Uint8Array(0);

function authorized(key: TpmKey): { handle: number; name: Uint8Array; authValue: Uint8Array } {
  return { handle: key.handle, name: key.name, authValue: key.authValue ?? EMPTY };
}

export class Tpm implements TpmFacade {
  private nvBufferMaxCache: number | undefined;

  constructor(readonly transport: TpmTransport) {}

  /**
   * Open a TPM from a tpm2-tools TCTI string (see transport/open.ts). `startup: true` sends
   * Startup(CLEAR) first, for a simulator that was just powered on (TPM_RC_INITIALIZE, "already
   * started", is fine).
   */
  static async open(tcti: string, opts: OpenOptions & { startup?: boolean } = {}): Promise<Tpm> {
    const tpm = new Tpm(await openTransport(tcti, opts));
    if (opts.startup) {
      await tpm.run(Startup, { startupType: TPM_SU.CLEAR }).catch((err: unknown) => {
        if (!isTpmRc(err, TPM_RC.INITIALIZE)) throw err;
      });
    }
    return tpm;
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  /** Run any command declaration through the pipeline. */
  run<C extends AnyCommand>(cmd: C, args: CommandArgs<C>, opts: ExecuteOptions = {}): Promise<CommandResult<C>> {
    return execute(this.transport, cmd, args, opts);
  }

  /** FlushContext (Part 3 §28.4) for a transient object or a session. */
  async flush(target: number | { handle: number }): Promise<void> {
    const handle = typeof target === 'number' ? target : target.handle;
    await this.run(FlushContext, { flushHandle: handle });
    if (typeof target === 'object' && 'markFlushed' in target && typeof target.markFlushed === 'function') {
      (target as AuthSession).markFlushed();
    }
  }

  /**
   * Run `fn` with a key, then flush it if it is transient — also when `fn` throws. Persistent
   * keys are left alone, so callers can pass whatever readEkPublic or load returned.
   */
  async withTransient<K extends { handle: number }, T>(key: K | Promise<K>, fn: (key: K) => Promise<T>): Promise<T> {
    const k = await key;
    try {
      return await fn(k);
    } finally {
      if (handleType(k.handle) === TPM_HT.TRANSIENT) await this.flush(k.handle).catch(() => undefined);
    }
  }

  startSession(kind: 'hmac' | 'policy' | 'trial', opts: StartSessionOptions = {}): Promise<AuthSession> {
    return startSession(this.transport, kind, opts);
  }

  /** Run `fn` with a fresh session, flushing it afterwards unless the TPM already did. */
  async withSession<T>(
    kind: 'hmac' | 'policy' | 'trial',
    opts: StartSessionOptions,
    fn: (session: AuthSession) => Promise<T>,
  ): Promise<T> {
    const s = await this.startSession(kind, opts);
    try {
      return await fn(s);
    } finally {
      if (!s.flushed) await this.flush(s).catch(() => undefined);
    }
  }

  // ------------------------------------------------------------------ information

  async getRandom(n: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let have = 0;
    while (have < n) {
      const { randomBytes } = await this.run(GetRandom, { bytesRequested: Math.min(n - have, 32) });
      if (randomBytes.length === 0) break;
      parts.push(randomBytes);
      have += randomBytes.length;
    }
    return Buffer.concat(parts).subarray(0, n);
  }

  /** One TPM_PT property, or undefined when the TPM does not report it. */
  async getProperty(property: number): Promise<number | undefined> {
    const { capabilityData } = await this.run(GetCapability, {
      capability: TPM_CAP.TPM_PROPERTIES,
      property,
      propertyCount: 1,
    });
    if (capabilityData.capability !== TPM_CAP.TPM_PROPERTIES) return undefined;
    const p = capabilityData.tpmProperties[0];
    return p && p.property === property ? p.value : undefined;
  }

  /**
   * Handles of one type, given as its first handle (0x80000000 transient, 0x81000000
   * persistent, 0x01000000 NV, 0x02000000 loaded sessions of either kind), following moreData.
   */
  async getHandles(first: number): Promise<number[]> {
    const out: number[] = [];
    let next = first;
    for (;;) {
      const { moreData, capabilityData } = await this.run(GetCapability, {
        capability: TPM_CAP.HANDLES,
        property: next,
        propertyCount: 256,
      });
      if (capabilityData.capability !== TPM_CAP.HANDLES || capabilityData.handles.length === 0) break;
      out.push(...capabilityData.handles);
      const last = capabilityData.handles[capabilityData.handles.length - 1]!;
      if (!moreData || last < next) break;
      next = last + 1;
    }
    return out;
  }

  /** TPM_PT_NV_BUFFER_MAX (Part 2 §6.13), 1024 when not reported. */
  async nvBufferMax(): Promise<number> {
    this.nvBufferMaxCache ??= (await this.getProperty(TPM_PT.NV_BUFFER_MAX)) ?? 1024;
    return this.nvBufferMaxCache;
  }

  // ------------------------------------------------------------------ PCRs

  /** Read PCR values, looping because PCR_Read answers at most 8 digests at a time. */
  async pcrRead(banks: PcrBankSelection[]): Promise<{ updateCounter: number; values: PcrValue[] }> {
    let pending: TpmlPcrSelection = pcrSelection(...banks);
    const values: PcrValue[] = [];
    let updateCounter = 0;
    for (let round = 0; pending.some((s) => selectedPcrs(s).length > 0); round++) {
      if (round > 64) throw new TypeError('PCR_Read made no progress');
      const res = await this.run(PCR_Read, { pcrSelectionIn: pending });
      updateCounter = res.pcrUpdateCounter;
      let i = 0;
      for (const sel of res.pcrSelectionOut) {
        for (const pcr of selectedPcrs(sel)) values.push({ hash: sel.hash, pcr, digest: res.pcrValues[i++]! });
      }
      if (i === 0) break; // the TPM has none of what is left (unallocated bank)
      pending = pending.map((sel) => {
        const got = res.pcrSelectionOut.find((o) => o.hash === sel.hash);
        const done = new Set(got ? selectedPcrs(got) : []);
        return pcrSelection({ hash: sel.hash, pcrs: selectedPcrs(sel).filter((p) => !done.has(p)) })[0]!;
      });
    }
    return { updateCounter, values };
  }

  /** Extend one PCR in each bank given (Part 3 §22.2). */
  async pcrExtend(pcr: number, digests: TpmtHa[], authValue: Uint8Array = EMPTY): Promise<void> {
    await this.run(PCR_Extend, { pcrHandle: { handle: pcr, authValue }, digests });
  }

  // ------------------------------------------------------------------ objects

  async readPublic(handle: number): Promise<TpmKey> {
    const r = await this.run(ReadPublic, { objectHandle: handle });
    return { handle, name: r.name, public: r.outPublic };
  }

  /** CreatePrimary (Part 3 §24.1); the key is transient: flush it, or use withTransient. */
  async createPrimary(
    hierarchy: number,
    template: TpmtPublic,
    opts: { hierarchyAuth?: Uint8Array; userAuth?: Uint8Array } = {},
  ): Promise<TpmKey> {
    const r = await this.run(CreatePrimary, {
      primaryHandle: { handle: hierarchy, authValue: opts.hierarchyAuth ?? EMPTY },
      inSensitive: { value: { userAuth: opts.userAuth ?? EMPTY, data: EMPTY } },
      inPublic: { value: template },
      outsideInfo: EMPTY,
      creationPCR: [],
    });
    return {
      handle: r.objectHandle,
      name: r.name,
      public: r.outPublic,
      ...(opts.userAuth ? { authValue: opts.userAuth } : {}),
    };
  }

  /** Create (Part 3 §12.1) under a loaded storage parent; returns the storable blob. */
  async create(parent: TpmKey, template: TpmtPublic, opts: { userAuth?: Uint8Array } = {}): Promise<KeyBlob> {
    const r = await this.run(Create, {
      parentHandle: authorized(parent),
      inSensitive: { value: { userAuth: opts.userAuth ?? EMPTY, data: EMPTY } },
      inPublic: { value: template },
      outsideInfo: EMPTY,
      creationPCR: [],
    });
    return { private: r.outPrivate, public: r.outPublic };
  }

  /** Load (Part 3 §12.2); the key is transient. */
  async load(parent: TpmKey, blob: KeyBlob, authValue?: Uint8Array): Promise<TpmKey> {
    const r = await this.run(Load, {
      parentHandle: authorized(parent),
      inPrivate: blob.private,
      inPublic: blob.public,
    });
    return { handle: r.objectHandle, name: r.name, public: blob.public, ...(authValue ? { authValue } : {}) };
  }

  /** LoadExternal (Part 3 §12.3) of a public key only, in the NULL hierarchy by default. */
  async loadExternal(pub: TpmtPublic | Sized<TpmtPublic>, hierarchy: number = TPM_RH.NULL): Promise<TpmKey> {
    const inPublic = 'bytes' in pub ? pub : { value: pub };
    const r = await this.run(LoadExternal, { inPrivate: null, inPublic, hierarchy });
    return {
      handle: r.objectHandle,
      name: r.name,
      public: 'bytes' in pub ? pub : (await this.readPublic(r.objectHandle)).public,
    };
  }

  /** EvictControl (Part 3 §28.5): make a transient key persistent at `persistentHandle`. */
  async persist(key: TpmKey, persistentHandle: number, ownerAuth: Uint8Array = EMPTY): Promise<TpmKey> {
    await this.run(EvictControl, {
      auth: { handle: TPM_RH.OWNER, authValue: ownerAuth },
      objectHandle: key,
      persistentHandle,
    });
    return { ...key, handle: persistentHandle };
  }

  /** EvictControl on a persistent handle removes it. */
  async evict(persistent: TpmKey, ownerAuth: Uint8Array = EMPTY): Promise<void> {
    await this.run(EvictControl, {
      auth: { handle: TPM_RH.OWNER, authValue: ownerAuth },
      objectHandle: persistent,
      persistentHandle: persistent.handle,
    });
  }

  // ------------------------------------------------------------------ NV (nv.ts)

  nvReadPublic(index: number): Promise<NvIndexInfo> {
    return nvReadPublic(this, index);
  }

  async nvRead(index: number, opts: { authHandle?: number; authValue?: Uint8Array } = {}): Promise<Uint8Array> {
    return nvRead(this, index, await this.nvBufferMax(), opts);
  }

  nvDefine(index: number, size: number, opts: NvDefineOptions = {}): Promise<NvIndexInfo> {
    return nvDefine(this, index, size, opts);
  }

  async nvWrite(
    index: number,
    data: Uint8Array,
    opts: { authHandle?: number; authValue?: Uint8Array; offset?: number } = {},
  ): Promise<void> {
    return nvWrite(this, index, data, await this.nvBufferMax(), opts);
  }

  nvUndefine(index: number, ownerAuth: Uint8Array = EMPTY): Promise<void> {
    return nvUndefine(this, index, ownerAuth);
  }

  // ------------------------------------------------------------------ keys Sigil uses

  /** The storage root key (templates.ts srkTemplateEccP256), transient. Persist or cache it: real TPMs take ~100 ms+. */
  createSrk(ownerAuth: Uint8Array = EMPTY): Promise<TpmKey> {
    return this.createPrimary(TPM_RH.OWNER, srkTemplateEccP256(), { hierarchyAuth: ownerAuth });
  }

  /** A restricted ECDSA P-256 attestation key under `srk` (templates.ts akTemplateEccP256). */
  createAk(srk: TpmKey): Promise<KeyBlob> {
    return this.create(srk, akTemplateEccP256());
  }

  /** A non-restricted ECDSA P-256 signing key under `parent` (templates.ts signingKeyTemplateEccP256). */
  createSigningKey(parent: TpmKey, userAuth?: Uint8Array): Promise<KeyBlob> {
    return this.create(parent, signingKeyTemplateEccP256(), userAuth ? { userAuth } : {});
  }

  /**
   * Sign a digest (Part 3 §20.2). Without a scheme, ECDSA (or RSASSA for RSA keys) with the hash
   * whose size matches the digest.
   */
  async sign(key: TpmKey, digest: Uint8Array, scheme?: TpmtSigScheme): Promise<TpmtSignature> {
    const hashAlg = [TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512, TPM_ALG.SHA1].find(
      (h) => digestSize(h) === digest.length,
    );
    const inScheme: TpmtSigScheme =
      scheme ??
      (hashAlg === undefined
        ? SCHEME_NULL
        : { scheme: key.public.value.type === TPM_ALG.RSA ? TPM_ALG.RSASSA : TPM_ALG.ECDSA, hashAlg });
    const { signature } = await this.run(Sign, {
      keyHandle: authorized(key),
      digest,
      inScheme,
      validation: NULL_HASHCHECK,
    });
    return signature;
  }

  /** Quote (Part 3 §18.4) the selected PCRs with the verifier's nonce, signed by the AK's own scheme. */
  async quote(ak: TpmKey, nonce: Uint8Array, pcrs: PcrBankSelection[]): Promise<SignedAttestation> {
    const r = await this.run(Quote, {
      signHandle: authorized(ak),
      qualifyingData: nonce,
      inScheme: SCHEME_NULL,
      pcrSelect: pcrSelection(...pcrs),
    });
    return { attest: r.quoted, signature: r.signature };
  }

  /** Certify (Part 3 §18.2): the AK attests that `object` lives in this TPM, with the verifier's nonce. */
  async certify(object: TpmKey, ak: TpmKey, nonce: Uint8Array): Promise<SignedAttestation> {
    const r = await this.run(Certify, {
      objectHandle: authorized(object),
      signHandle: authorized(ak),
      qualifyingData: nonce,
      inScheme: SCHEME_NULL,
    });
    return { attest: r.certifyInfo, signature: r.signature };
  }

  /**
   * ActivateCredential (Part 3 §12.5): recover the verifier's secret, proving the AK and the EK
   * share this TPM. The EK is authorized as its policy requires (ek.ts authorizeEk).
   */
  async activateCredential(
    ak: TpmKey,
    ek: TpmKey,
    credentialBlob: Uint8Array,
    secret: Uint8Array,
    opts: { endorsementAuth?: Uint8Array } = {},
  ): Promise<Uint8Array> {
    return authorizeEk(this, ek, opts.endorsementAuth ?? EMPTY, async (ekAuth) => {
      const { certInfo } = await this.run(ActivateCredential, {
        activateHandle: authorized(ak),
        keyHandle: { handle: ek.handle, name: ek.name, ...ekAuth },
        credentialBlob,
        secret,
      });
      return certInfo;
    });
  }

  /** The EK certificate from its well-known NV index (ek.ts). */
  readEkCertificate(kind?: EkKind): Promise<EkCertificate | undefined> {
    return readEkCertificate(this, kind);
  }

  /** The EK: its persistent handle when provisioned, else CreatePrimary with the profile template (ek.ts). */
  readEkPublic(kind: EkKind = 'rsa-2048', opts: { endorsementAuth?: Uint8Array } = {}): Promise<TpmKey> {
    return readEkPublic(this, kind, opts.endorsementAuth ?? EMPTY);
  }
}
