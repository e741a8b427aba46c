/**
 * A TPM command as a declaration: its code, its handles (and which need an authorization
 * session), its parameter codecs in wire order, how many handles the response carries and its
 * response parameter codecs. The single pipeline in execute.ts runs every declaration; the
 * argument and result types are derived from the codecs, so the compiler checks every call.
 *
 * ```ts
 * export const Quote = command(TPM_CC.Quote, {                 // Part 3 §18.4
 *   handles: { signHandle: AUTH },
 *   params: { qualifyingData: tpm2bData, inScheme: tpmtSigScheme, pcrSelect: tpmlPcrSelection },
 *   response: { quoted: tpm2bAttest, signature: tpmtSignature },
 * });
 * ```
 */
import { nameOf } from './constants.js';
import { TPM_CC } from './constants.js';
import type { Codec, Decoded, Encodable } from './structures/codec.js';
import type { Session } from './session.js';

/** A handle that needs an authorization session (USER, ADMIN or DUP role; Part 1 §19.2). */
export const AUTH = 'auth' as const;
/** A handle that is named but not authorized. */
export const PLAIN = 'plain' as const;
export type HandleKind = typeof AUTH | typeof PLAIN;

/** A handle with what the pipeline may need about it. */
export interface NamedHandle {
  handle: number;
  /** The entity's Name; required for objects and NV indices when an HMAC or policy session is used. */
  name?: Uint8Array;
}

/** A handle to authorize: the session sits on the handle, the entity's authValue with it. */
export interface AuthorizedHandle extends NamedHandle {
  /** Default: the password pseudo-session. */
  auth?: Session;
  /** The entity's authValue (password, or HMAC key material). Default empty. */
  authValue?: Uint8Array;
}

export type HandleRef = number | NamedHandle;
export type AuthHandleRef = number | AuthorizedHandle;

// A record of heterogeneous codecs: the one place `any` is needed.
type AnyCodec = Codec<any, any>;

export interface CommandSpec<
  H extends Record<string, HandleKind>,
  P extends Record<string, AnyCodec>,
  RH extends readonly string[],
  R extends Record<string, AnyCodec>,
> {
  handles?: H;
  params?: P;
  /** Names of the handles in the response handle area (e.g. CreatePrimary's objectHandle). */
  responseHandles?: RH;
  response?: R;
}

export interface Command<
  H extends Record<string, HandleKind>,
  P extends Record<string, AnyCodec>,
  RH extends readonly string[],
  R extends Record<string, AnyCodec>,
> {
  readonly code: number;
  /** "Quote": the TPM2_ name without its prefix. */
  readonly name: string;
  readonly handles: H;
  readonly params: P;
  readonly responseHandles: RH;
  readonly response: R;
}

export type AnyCommand = Command<
  Record<string, HandleKind>,
  Record<string, AnyCodec>,
  readonly string[],
  Record<string, AnyCodec>
>;

type HandleArgs<H> = { [K in keyof H]: H[K] extends typeof AUTH ? AuthHandleRef : HandleRef };
type ParamArgs<P> = { [K in keyof P]: Encodable<P[K]> };

/** What a caller passes: every handle and every parameter, by name. */
export type CommandArgs<C> =
  C extends Command<infer H, infer P, infer _RH, infer _R> ? HandleArgs<H> & ParamArgs<P> : never;

/** What a command returns: response handles (numbers) and decoded response parameters. */
export type CommandResult<C> =
  C extends Command<infer _H, infer _P, infer RH, infer R>
    ? { [K in RH[number]]: number } & { [K in keyof R]: Decoded<R[K]> }
    : never;

export function command<
  const H extends Record<string, HandleKind> = Record<never, HandleKind>,
  P extends Record<string, AnyCodec> = Record<never, AnyCodec>,
  const RH extends readonly string[] = readonly [],
  R extends Record<string, AnyCodec> = Record<never, AnyCodec>,
>(code: number, spec: CommandSpec<H, P, RH, R>): Command<H, P, RH, R> {
  return {
    code,
    name: nameOf(TPM_CC, code) ?? `0x${code.toString(16)}`,
    handles: spec.handles ?? ({} as H),
    params: spec.params ?? ({} as P),
    responseHandles: spec.responseHandles ?? ([] as unknown as RH),
    response: spec.response ?? ({} as R),
  };
}

/** The handle number of a reference. */
export function handleOf(ref: HandleRef): number {
  return typeof ref === 'number' ? ref : ref.handle;
}
