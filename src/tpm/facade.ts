/**
 * What the Tpm facade (tpm.ts) offers the helpers it delegates to — nv.ts (NV indices) and ek.ts
 * (the endorsement key) — and the key type they all pass around. The helpers take this interface
 * instead of the Tpm class, so the dependency runs one way: tpm.ts → nv.ts/ek.ts → facade.ts
 * (issue #13, no import cycles). `Tpm` implements it; tpm.ts re-exports `TpmKey`.
 */
import type { AnyCommand, CommandArgs, CommandResult } from './command.js';
import type { ExecuteOptions } from './execute.js';
import type { AuthSession } from './session.js';
import type { StartSessionOptions } from './start-session.js';
import type { Tpm2bPublic, TpmtPublic } from './structures/public.js';

/**
 * A loaded (transient) or persistent key: enough to name and authorize it — its handle, its Name
 * (Part 1 §16, which a command's cpHash covers in place of the handle) and its public area, as
 * ReadPublic, CreatePrimary and Load return them (Part 3 §12.4, §24.1, §12.2).
 */
export interface TpmKey {
  handle: number;
  name: Uint8Array;
  public: Tpm2bPublic;
  /** The key's authValue, when it has one. */
  authValue?: Uint8Array;
}

/** The Tpm methods nv.ts and ek.ts call back into; see tpm.ts for what each does. */
export interface TpmFacade {
  /** Any command declaration through the pipeline (execute.ts). */
  run<C extends AnyCommand>(cmd: C, args: CommandArgs<C>, opts?: ExecuteOptions): Promise<CommandResult<C>>;
  /** NV_Read (Part 3 §31.13) of a whole index, chunked by TPM_PT_NV_BUFFER_MAX. */
  nvRead(index: number, opts?: { authHandle?: number; authValue?: Uint8Array }): Promise<Uint8Array>;
  /** ReadPublic (Part 3 §12.4). */
  readPublic(handle: number): Promise<TpmKey>;
  /** CreatePrimary (Part 3 §24.1); the key is transient. */
  createPrimary(
    hierarchy: number,
    template: TpmtPublic,
    opts?: { hierarchyAuth?: Uint8Array; userAuth?: Uint8Array },
  ): Promise<TpmKey>;
  /** `fn` with a fresh session (StartAuthSession, Part 3 §11.1), flushed afterwards. */
  withSession<T>(
    kind: 'hmac' | 'policy' | 'trial',
    opts: StartSessionOptions,
    fn: (session: AuthSession) => Promise<T>,
  ): Promise<T>;
}
