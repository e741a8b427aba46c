/**
 * Starting HMAC, policy and trial sessions (Part 3 §11.1 TPM2_StartAuthSession), optionally
 * bound to an entity and/or salted with a TPM key (Part 1 §19.6.8 session key).
 */
import { randomBytes } from 'node:crypto';
import { TPMA_SESSION, TPM_ALG, TPM_RH, TPM_SE } from './constants.js';
import { StartAuthSession } from './commands/session.js';
import { digestSize } from './crypto/hash.js';
import { kdfa } from './crypto/kdfa.js';
import { encryptSeed } from './crypto/secret.js';
import { execute } from './execute.js';
import { trimAuth, AuthSession } from './session.js';
import type { TpmtPublic } from './structures/public.js';
import type { TpmtSymDef } from './structures/schemes.js';
import type { TpmTransport } from './transport/transport.js';

export interface StartSessionOptions {
  /** Session hash (cpHash, HMACs, KDFs). Default SHA-256. */
  hashAlg?: number;
  /** Bind the session key to this entity's authValue (Part 1 §19.6.10). */
  bind?: { handle: number; name: Uint8Array; authValue: Uint8Array };
  /** Salt the session key with a seed encrypted to this loaded key (Part 1 §19.6.11). */
  salt?: { handle: number; public: TpmtPublic };
  /** Parameter encryption cipher. Default AES-128-CFB when `decrypt`/`encrypt` is asked, else NULL. */
  symmetric?: TpmtSymDef;
  /** Encrypt the first command parameter (TPMA_SESSION.decrypt). */
  decrypt?: boolean;
  /** Encrypt the first response parameter (TPMA_SESSION.encrypt). */
  encrypt?: boolean;
  /** Keep the session after each command (default true; false ends it after one use). */
  continueSession?: boolean;
}

export async function startSession(
  transport: TpmTransport,
  kind: 'hmac' | 'policy' | 'trial',
  opts: StartSessionOptions = {},
): Promise<AuthSession> {
  const hashAlg = opts.hashAlg ?? TPM_ALG.SHA256;
  const nonceCaller = randomBytes(Math.max(16, digestSize(hashAlg)));
  const wantsCipher = opts.decrypt === true || opts.encrypt === true;
  const symmetric: TpmtSymDef =
    opts.symmetric ??
    (wantsCipher ? { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB } : { algorithm: TPM_ALG.NULL });
  const salted = opts.salt ? encryptSeed(opts.salt.public, 'SECRET') : undefined;

  const res = await execute(transport, StartAuthSession, {
    tpmKey: opts.salt ? { handle: opts.salt.handle } : TPM_RH.NULL,
    bind: opts.bind ? { handle: opts.bind.handle, name: opts.bind.name } : TPM_RH.NULL,
    nonceCaller,
    encryptedSalt: salted?.encrypted ?? new Uint8Array(0),
    sessionType: kind === 'hmac' ? TPM_SE.HMAC : kind === 'policy' ? TPM_SE.POLICY : TPM_SE.TRIAL,
    symmetric,
    authHash: hashAlg,
  });

  // Part 1 §19.6.8: no bind and no salt → the session key is empty.
  let sessionKey: Uint8Array = new Uint8Array(0);
  if (opts.bind || salted) {
    const secret = Buffer.concat([
      opts.bind ? trimAuth(opts.bind.authValue) : new Uint8Array(0),
      salted?.seed ?? new Uint8Array(0),
    ]);
    sessionKey = kdfa(hashAlg, secret, 'ATH', res.nonceTPM, nonceCaller, digestSize(hashAlg) * 8);
  }

  let attributes = opts.continueSession === false ? 0 : TPMA_SESSION.continueSession;
  if (opts.decrypt) attributes |= TPMA_SESSION.decrypt;
  if (opts.encrypt) attributes |= TPMA_SESSION.encrypt;

  return new AuthSession({
    kind,
    handle: res.sessionHandle,
    hashAlg,
    nonceCaller,
    nonceTPM: res.nonceTPM,
    sessionKey,
    ...(opts.bind ? { bindName: opts.bind.name } : {}),
    symmetric,
    attributes,
  });
}
