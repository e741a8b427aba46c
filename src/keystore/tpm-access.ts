/**
 * How Sigil uses a TPM from a long-running agent: one connection per operation, the storage
 * root key cached for the process, every transient object flushed.
 *
 * Why a connection per operation rather than one held open: swtpm (and a TPM behind
 * `device:/dev/tpm0`) serves one client at a time, and the agent is idle almost always —
 * holding the connection would lock out tpm2-tools, tpm2-abrmd and OpenSSL's tpm2 provider,
 * which workloads use with the very key Sigil wrote (svid.tss2.pem). Opening costs a loopback
 * connect (swtpm) or an open() (/dev/tpmrm0); the TPM commands cost far more.
 *
 * Why a saved context rather than a transient handle for the SRK: CreatePrimary of the ECC SRK
 * takes 50–200 ms on real chips. After the first one, the SRK's context (TPM2_ContextSave,
 * Part 3 §28.2) is kept in memory and TPM2_ContextLoad brings it back in one cheap command on
 * the next connection — also through a resource manager (tpmrm0, tabrmd), which flushes a
 * client's transient objects when it disconnects. A context that no longer loads (TPM Reset,
 * TPM2_Clear) is dropped and the SRK is created again. Nothing is ever made persistent: Sigil
 * does not take NV or persistent handles from the owner.
 *
 * Operations on one TCTI are serialised inside the process (a TPM runs one command at a time
 * anyway, and swtpm queues a second connection until the first closes).
 *
 * {@link TpmAccess.session} widens "one operation" to a short burst of them — one round of a
 * join (new key, CSR signature, evidence, envelope signature) — so the burst pays for one
 * connect and one close instead of four (bench/tpm-join.ts). It never spans a network wait:
 * other TPM users are locked out for as long as a session is open.
 *
 * That state — the queue and the SRK's saved context — lives in a {@link TpmAccess}, one per
 * TCTI, held by whoever uses the TPM: the agent keeps one per TCTI ({@link TpmAccesses}) and
 * hands the same object to its TPM keys, its join method and its credential outputs, so two
 * agents (or two tests) in one process share nothing. An open session is found through the
 * async context (AsyncLocalStorage), by TCTI: code running inside a burst reuses its
 * connection whichever TpmAccess it holds.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { SigilError } from '../errors.js';
import { ContextLoad, ContextSave } from '../tpm/commands/context.js';
import { TPM_HT, TPM_RH, handleType } from '../tpm/constants.js';
import { TpmError } from '../tpm/errors.js';
import type { TpmsContext } from '../tpm/structures/context.js';
import type { Tpm2bPublic } from '../tpm/structures/public.js';
// The TPM client is imported when a connection is opened: an agent whose keys are not in a TPM
// never loads it (docs/performance.md "Agent footprint").
import type { Tpm, TpmKey } from '../tpm/tpm.js';

/** TPM_RH_OWNER as the parent of a TSS2 key: "the SRK made from the standard template". */
export const OWNER_PARENT = TPM_RH.OWNER;

/**
 * A transient object's saved context (TPM2_ContextSave; the TPM encrypts and integrity-protects
 * it) and what is needed to use it again. One ContextLoad then replaces whatever made the
 * object (CreatePrimary, or ContextLoad of the parent + Load + flush of the parent).
 */
export interface SavedObject {
  context?: TpmsContext;
  name?: Uint8Array;
  public?: Tpm2bPublic;
}

/**
 * The object from its saved context, or from `make()` (whose result is then saved). A context
 * that no longer loads — TPM Reset, TPM2_Clear, another TPM behind the same TCTI — is dropped.
 * The caller flushes the returned transient.
 */
export async function loadSaved(tpm: Tpm, saved: SavedObject, make: () => Promise<TpmKey>): Promise<TpmKey> {
  if (saved.context && saved.name && saved.public) {
    try {
      const { loadedHandle } = await tpm.run(ContextLoad, { context: saved.context });
      return { handle: loadedHandle, name: saved.name, public: saved.public };
    } catch (err) {
      // A warning (TPM_RC_RETRY, out of object memory) says nothing about the context.
      if (!(err instanceof TpmError) || err.decoded.warning) throw err;
      delete saved.context;
    }
  }
  const key = await make();
  try {
    const { context } = await tpm.run(ContextSave, { saveHandle: key.handle });
    Object.assign(saved, { context, name: key.name, public: key.public });
  } catch (err) {
    await tpm.flush(key).catch(() => undefined);
    throw err;
  }
  return key;
}

/** An open session's connection; operations inside it run one after another on it. */
interface OpenSession {
  tpm: Tpm;
  tail: Promise<unknown>;
  closed: boolean;
}
// Async-context keys (which session, which operation the current code runs in), not state:
// what they carry belongs to the TpmAccess.session() call that set it.
const sessions = new AsyncLocalStorage<ReadonlyMap<string, OpenSession>>();
const insideOperation = new AsyncLocalStorage<OpenSession>();

function openSession(tcti: string): OpenSession | undefined {
  const s = sessions.getStore()?.get(tcti);
  return s && !s.closed ? s : undefined;
}

/** The TPM behind one TCTI string, as its holder uses it: connections one at a time, the SRK kept as a saved context. */
export class TpmAccess {
  /** The end of the queue: the last operation's connection, closed or closing. */
  #tail: Promise<unknown> = Promise.resolve();
  /** The standard SRK's saved context (empty until the first use, or after {@link forgetSrk}). */
  #srk: SavedObject = {};

  constructor(readonly tcti: string) {}

  /**
   * Open a connection after every earlier operation through this object finished, run `fn` on
   * it, and close it. The caller gets `fn`'s result as soon as it is there; closing (for swtpm
   * a FIN and its answer) goes on in the background, and the *next* operation waits for it —
   * swtpm serves one connection at a time. A join round's close thus overlaps the network
   * round trip that follows it instead of adding to it.
   */
  #onConnection<T>(fn: (tpm: Tpm) => Promise<T>): Promise<T> {
    let settle!: { resolve: (v: T) => void; reject: (e: unknown) => void };
    const result = new Promise<T>((resolve, reject) => (settle = { resolve, reject }));
    this.#tail = this.#tail.then(async () => {
      let tpm: Tpm;
      try {
        const { Tpm } = await import('../tpm/tpm.js');
        tpm = await Tpm.open(this.tcti);
      } catch (err) {
        settle.reject(err);
        return;
      }
      try {
        settle.resolve(await fn(tpm));
      } catch (err) {
        settle.reject(err);
      }
      await tpm.close().catch(() => undefined);
    });
    return result;
  }

  /**
   * Open the TPM, run `fn`, close it (or run `fn` on the connection of an enclosing
   * {@link session} on this TCTI). TPM failures stay `tpm_error` (the TPM refused) or
   * `tpm_unavailable` (no connection, or a warning such as TPM_RC_RETRY: try again later).
   */
  run<T>(fn: (tpm: Tpm) => Promise<T>): Promise<T> {
    const session = openSession(this.tcti);
    if (session) {
      // Already inside an operation on this session (a nested call): queueing would deadlock.
      if (insideOperation.getStore() === session) return fn(session.tpm);
      const run = (): Promise<T> => insideOperation.run(session, () => fn(session.tpm));
      const next = session.tail.then(run, run);
      session.tail = next.catch(() => undefined);
      return next;
    }
    return this.#onConnection(fn);
  }

  /**
   * Hold one connection while `fn` runs: every {@link run} on this TCTI inside `fn` (including
   * its async continuations, and through any TpmAccess for the same TCTI) reuses it, in order.
   * Nested sessions on the same TCTI are the outer one. Something that outlives `fn` and then
   * touches the TPM opens its own connection as usual.
   */
  session<T>(fn: () => Promise<T>): Promise<T> {
    if (openSession(this.tcti)) return fn();
    return this.#onConnection(async (tpm) => {
      const session: OpenSession = { tpm, tail: Promise.resolve(), closed: false };
      const map = new Map(sessions.getStore() ?? []);
      map.set(this.tcti, session);
      try {
        return await sessions.run(map, fn);
      } finally {
        session.closed = true;
        await session.tail.catch(() => undefined);
      }
    });
  }

  /**
   * Run `fn` with the parent of a TSS2 key on `tpm` (a connection from {@link run}):
   * TPM_RH_OWNER means the standard SRK (loaded for the call and flushed after it); a
   * persistent handle (0x81……) is used as it is.
   */
  async withParent<T>(tpm: Tpm, parent: number, fn: (parent: TpmKey) => Promise<T>): Promise<T> {
    if (parent === OWNER_PARENT)
      return tpm.withTransient(
        loadSaved(tpm, this.#srk, () => tpm.createSrk()),
        fn,
      );
    if (handleType(parent) !== TPM_HT.PERSISTENT) {
      throw new SigilError(
        'config_invalid',
        `TPM key parent 0x${parent.toString(16)} is neither TPM_RH_OWNER (0x40000001) nor a persistent handle`,
      );
    }
    return fn(await tpm.readPublic(parent));
  }

  /** Forget the SRK's saved context (tests that clear or replace a simulator). */
  forgetSrk(): void {
    this.#srk = {};
  }
}

/**
 * The TPMs one holder uses — an agent: its identity keys, its join method, its credential
 * outputs — one {@link TpmAccess} per TCTI, the same object at every call. That sameness is
 * what keeps them out of each other's way: swtpm and a bare /dev/tpm0 have no resource manager,
 * and uses that do not wait for each other may find the TPM's three object slots taken by the
 * other's transients (TPM_RC_OBJECT_MEMORY, 0x902) or their connection refused. Two
 * holders in one process (two agents, two tests) each have their own and share nothing.
 */
export class TpmAccesses {
  readonly #byTcti = new Map<string, TpmAccess>();

  /** The access to the TPM at `tcti`, made on first use. */
  for(tcti: string): TpmAccess {
    let access = this.#byTcti.get(tcti);
    if (!access) this.#byTcti.set(tcti, (access = new TpmAccess(tcti)));
    return access;
  }
}
