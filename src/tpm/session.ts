/**
 * Authorization sessions (Part 1 §19): the password pseudo-session, HMAC sessions and policy
 * sessions share one interface; the pipeline asks each for its authorization entry and hands
 * it the TPM's answer to check.
 *
 *   cpHash   = H_sessionAlg(commandCode ‖ Name₁ ‖ … ‖ Nameₙ ‖ parameters)        (§18.7)
 *   rpHash   = H_sessionAlg(responseCode=0 ‖ commandCode ‖ parameters)           (§18.8)
 *   hmacKey  = sessionKey ‖ authValue   (authValue omitted for the bind entity of an HMAC
 *                                        session, and for a policy session without PolicyAuthValue)
 *   cmd HMAC = HMAC(hmacKey, cpHash ‖ nonceCaller ‖ nonceTPM ‖ {nonceDecrypt} ‖ {nonceEncrypt} ‖ attrs)  (§19.6.5)
 *   rsp HMAC = HMAC(hmacKey, rpHash ‖ nonceTPM ‖ nonceCaller ‖ attrs)           (§19.6.6)
 *   sessionKey = KDFa(sessionAlg, bind.authValue ‖ salt, "ATH", nonceTPM, nonceCaller, digestBits),
 *                or empty when neither bound nor salted                         (§19.6.8)
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { SigilError } from '../errors.js';
import { TPMA_SESSION, TPM_RH, TPM_ALG } from './constants.js';
import { cfbDecrypt, cfbEncrypt } from './crypto/cfb.js';
import { digestSize, hash, hmac } from './crypto/hash.js';
import { kdfa } from './crypto/kdfa.js';
import type { TpmsAuthCommand, TpmsAuthResponse } from './structures/auth.js';
import type { TpmtSymDef } from './structures/schemes.js';

export interface AuthorizeContext {
  commandCode: number;
  /** Names of every handle in the command's handle area, in order. */
  names: readonly Uint8Array[];
  /** The parameter area as sent (after any parameter encryption). */
  parameters: Uint8Array;
  /** Name of the entity this session authorizes; undefined for a session that only encrypts or audits. */
  entityName: Uint8Array | undefined;
  /** That entity's authValue (empty when none). */
  entityAuth: Uint8Array;
  /** nonceTPM of the decrypt and encrypt sessions when they are other sessions (§19.6.5). */
  extraNonces: Uint8Array;
}

export interface ValidateContext {
  commandCode: number;
  /** The response parameter area as received (before any decryption). */
  parameters: Uint8Array;
  entityName: Uint8Array | undefined;
  entityAuth: Uint8Array;
}

export interface Session {
  readonly kind: 'password' | 'hmac' | 'policy' | 'trial';
  /** The session handle (TPM_RS_PW for the password session). */
  readonly handle: number;
  /** Whether the pipeline must compute every handle's Name for this session. */
  readonly needsNames: boolean;
  /** TPMA_SESSION bits sent with the next command. */
  readonly attributes: number;
  /** The TPM's last nonce (empty for the password session). */
  readonly nonceTPM: Uint8Array;
  /** True once the TPM has flushed the session (continueSession was clear). */
  readonly flushed: boolean;
  /** Start a command: pick a fresh nonceCaller (before parameter encryption and authorize). */
  prepare(): void;
  authorize(ctx: AuthorizeContext): TpmsAuthCommand;
  validate(ctx: ValidateContext, response: TpmsAuthResponse): void;
  /** Encrypt the first command parameter's data (decrypt attribute set), or return it unchanged. */
  encryptCommand(data: Uint8Array, entityAuth: Uint8Array): Uint8Array;
  /** Decrypt the first response parameter's data (encrypt attribute set), or return it unchanged. */
  decryptResponse(data: Uint8Array, entityAuth: Uint8Array): Uint8Array;
}

/** Part 1 §19.6.4 Note: the TPM drops trailing zeros from an authValue before using it. */
export function trimAuth(auth: Uint8Array): Uint8Array {
  let n = auth.length;
  while (n > 0 && auth[n - 1] === 0) n--;
  return auth.subarray(0, n);
}

const EMPTY = new Uint8Array(0);

/** TPM_RS_PW: the authValue in the clear (Part 1 §19.8.4). */
class PasswordSession implements Session {
  readonly kind = 'password' as const;
  readonly handle = TPM_RH.PW;
  readonly needsNames = false;
  readonly attributes = TPMA_SESSION.continueSession;
  readonly nonceTPM = EMPTY;
  readonly flushed = false;

  prepare(): void {}

  authorize(ctx: AuthorizeContext): TpmsAuthCommand {
    return { sessionHandle: this.handle, nonce: EMPTY, sessionAttributes: this.attributes, hmac: ctx.entityAuth };
  }

  validate(_ctx: ValidateContext, r: TpmsAuthResponse): void {
    if (r.nonce.length !== 0 || r.hmac.length !== 0) {
      throw new SigilError('internal', 'the TPM answered a password session with a nonce or HMAC');
    }
  }

  encryptCommand(data: Uint8Array): Uint8Array {
    return data;
  }

  decryptResponse(data: Uint8Array): Uint8Array {
    return data;
  }
}

/** The password pseudo-session; the entity's authValue comes from the handle. */
export const PASSWORD: Session = new PasswordSession();

export interface AuthSessionInit {
  kind: 'hmac' | 'policy' | 'trial';
  handle: number;
  hashAlg: number;
  nonceCaller: Uint8Array;
  nonceTPM: Uint8Array;
  /** Empty when neither bound nor salted. */
  sessionKey: Uint8Array;
  /** Name of the bind entity, when bound. */
  bindName?: Uint8Array;
  symmetric: TpmtSymDef;
  attributes: number;
}

/** A started HMAC, policy or trial session (StartAuthSession, Part 3 §11.1). */
export class AuthSession implements Session {
  readonly kind: 'hmac' | 'policy' | 'trial';
  readonly handle: number;
  readonly hashAlg: number;
  readonly needsNames = true;
  readonly symmetric: TpmtSymDef;
  attributes: number;
  private nonceCaller: Uint8Array;
  private tpmNonce: Uint8Array;
  private readonly sessionKey: Uint8Array;
  private readonly bindName: Uint8Array | undefined;
  private isFlushed = false;
  /** Policy sessions: PolicyAuthValue ran, so the HMAC key includes the entity's authValue (Part 3 §23.17). */
  policyAuthValue = false;
  /** Policy sessions: PolicyPassword ran, so the authValue is sent in the clear (Part 3 §23.18). */
  policyPassword = false;

  constructor(init: AuthSessionInit) {
    this.kind = init.kind;
    this.handle = init.handle;
    this.hashAlg = init.hashAlg;
    this.nonceCaller = init.nonceCaller;
    this.tpmNonce = init.nonceTPM;
    this.sessionKey = init.sessionKey;
    this.bindName = init.bindName;
    this.symmetric = init.symmetric;
    this.attributes = init.attributes;
  }

  get nonceTPM(): Uint8Array {
    return this.tpmNonce;
  }

  get flushed(): boolean {
    return this.isFlushed;
  }

  /** The pipeline or FlushContext tells the session it no longer exists in the TPM. */
  markFlushed(): void {
    this.isFlushed = true;
  }

  private includesAuth(entityName: Uint8Array | undefined): boolean {
    if (entityName === undefined) return false;
    if (this.kind === 'policy' || this.kind === 'trial') return this.policyAuthValue;
    // An HMAC session authorizing its bind entity already has the authValue in its key (§19.6.5).
    return !(this.bindName !== undefined && Buffer.from(this.bindName).equals(entityName));
  }

  private hmacKey(entityName: Uint8Array | undefined, entityAuth: Uint8Array): Uint8Array {
    return this.includesAuth(entityName) ? Buffer.concat([this.sessionKey, trimAuth(entityAuth)]) : this.sessionKey;
  }

  authorize(ctx: AuthorizeContext): TpmsAuthCommand {
    if (this.kind === 'policy' && this.policyPassword && ctx.entityName !== undefined) {
      return {
        sessionHandle: this.handle,
        nonce: this.nonceCaller,
        sessionAttributes: this.attributes,
        hmac: ctx.entityAuth,
      };
    }
    const cc = Buffer.alloc(4);
    cc.writeUInt32BE(ctx.commandCode);
    const cpHash = hash(this.hashAlg, cc, ...ctx.names, ctx.parameters);
    const mac = hmac(
      this.hashAlg,
      this.hmacKey(ctx.entityName, ctx.entityAuth),
      cpHash,
      this.nonceCaller,
      this.tpmNonce,
      ctx.extraNonces,
      Uint8Array.of(this.attributes),
    );
    return { sessionHandle: this.handle, nonce: this.nonceCaller, sessionAttributes: this.attributes, hmac: mac };
  }

  validate(ctx: ValidateContext, r: TpmsAuthResponse): void {
    this.tpmNonce = r.nonce;
    if ((r.sessionAttributes & TPMA_SESSION.continueSession) === 0) this.isFlushed = true;
    if (this.kind === 'policy' && this.policyPassword && ctx.entityName !== undefined) {
      if (r.hmac.length !== 0)
        throw new SigilError('internal', 'the TPM answered a PolicyPassword session with an HMAC');
      return;
    }
    const head = Buffer.alloc(8);
    head.writeUInt32BE(0, 0);
    head.writeUInt32BE(ctx.commandCode, 4);
    const rpHash = hash(this.hashAlg, head, ctx.parameters);
    const expected = hmac(
      this.hashAlg,
      this.hmacKey(ctx.entityName, ctx.entityAuth),
      rpHash,
      this.tpmNonce,
      this.nonceCaller,
      Uint8Array.of(r.sessionAttributes),
    );
    if (expected.length !== r.hmac.length || !timingSafeEqual(expected, r.hmac)) {
      throw new SigilError(
        'internal',
        `the TPM response HMAC for session 0x${this.handle.toString(16)} does not verify`,
      );
    }
  }

  /** Part 1 §21.3: AES-CFB with key ‖ IV = KDFa(hash, sessionKey ‖ authValue, "CFB", nonceNewer, nonceOlder, bits). */
  private cfbKeyIv(entityAuth: Uint8Array, newer: Uint8Array, older: Uint8Array): { key: Buffer; iv: Buffer } {
    const sym = this.symmetric;
    if (sym.algorithm !== TPM_ALG.AES || sym.mode !== TPM_ALG.CFB) {
      throw new SigilError('config_invalid', 'parameter encryption needs a session with AES-CFB');
    }
    const keyBytes = sym.keyBits / 8;
    const material = kdfa(
      this.hashAlg,
      Buffer.concat([this.sessionKey, trimAuth(entityAuth)]),
      'CFB',
      newer,
      older,
      (keyBytes + 16) * 8,
    );
    return { key: material.subarray(0, keyBytes), iv: material.subarray(keyBytes) };
  }

  encryptCommand(data: Uint8Array, entityAuth: Uint8Array): Uint8Array {
    if ((this.attributes & TPMA_SESSION.decrypt) === 0) return data;
    const { key, iv } = this.cfbKeyIv(entityAuth, this.nonceCaller, this.tpmNonce);
    return cfbEncrypt(key, iv, data);
  }

  decryptResponse(data: Uint8Array, entityAuth: Uint8Array): Uint8Array {
    if ((this.attributes & TPMA_SESSION.encrypt) === 0) return data;
    const { key, iv } = this.cfbKeyIv(entityAuth, this.tpmNonce, this.nonceCaller);
    return cfbDecrypt(key, iv, data);
  }

  prepare(): void {
    if (this.isFlushed) throw new TypeError(`session 0x${this.handle.toString(16)} was already flushed`);
    this.nonceCaller = randomBytes(Math.max(16, digestSize(this.hashAlg)));
  }
}
