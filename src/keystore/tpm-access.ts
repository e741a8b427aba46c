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
 * {@link withTpmSession} widens "one operation" to a short burst of them — one round of a join
 * (new key, CSR signature, evidence, envelope signature) — so the burst pays for one connect
 * and one close instead of four (bench/tpm-join.ts). It never spans a network wait: other
 * TPM users are locked out for as long as a session is open.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { SigilError } from '../errors.js';
import { ContextLoad, ContextSave } from '../tpm/commands/context.js';
import { TPM_HT, TPM_RH, handleType } from '../tpm/constants.js';
import { TpmError } from '../tpm/errors.js';
import type { TpmsContext } from '../tpm/structures/context.js';
import type { Tpm2bPublic } from '../tpm/structures/public.js';
import { Tpm, type TpmKey } from '../tpm/tpm.js';

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

const srkCache = new Map<string, SavedObject>();
const queues = new Map<string, Promise<unknown>>();

/**
 * Open a connection to `tcti` after every earlier operation on it in this process finished,
 * run `fn` on it, and close it. The caller gets `fn`'s result as soon as it is there; closing
 * (for swtpm a FIN and its answer) goes on in the background, and the *next* operation on the
 * TCTI waits for it — swtpm serves one connection at a time. A join round's close thus overlaps
 * the network round trip that follows it instead of adding to it.
 */
function onConnection<T>(tcti: string, fn: (tpm: Tpm) => Promise<T>): Promise<T> {
  const prev = queues.get(tcti) ?? Promise.resolve();
  let settle!: { resolve: (v: T) => void; reject: (e: unknown) => void };
  const result = new Promise<T>((resolve, reject) => (settle = { resolve, reject }));
  const tail = prev.then(async () => {
    let tpm: Tpm;
    try {
      tpm = await Tpm.open(tcti);
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
  queues.set(tcti, tail);
  void tail.then(() => {
    if (queues.get(tcti) === tail) queues.delete(tcti);
  });
  return result;
}

/** An open session's connection; operations inside it run one after another on it. */
interface OpenSession {
  tpm: Tpm;
  tail: Promise<unknown>;
  closed: boolean;
}
const sessions = new AsyncLocalStorage<ReadonlyMap<string, OpenSession>>();
const insideOperation = new AsyncLocalStorage<OpenSession>();

/**
 * Hold one connection to `tcti` while `fn` runs: every {@link withTpm} on that TCTI inside
 * `fn` (including its async continuations) reuses it, in order. Nested sessions on the same
 * TCTI are the outer one. Something that outlives `fn` and then touches the TPM opens its own
 * connection as usual.
 */
export function withTpmSession<T>(tcti: string, fn: () => Promise<T>): Promise<T> {
  if (openSession(tcti)) return fn();
  return onConnection(tcti, async (tpm) => {
    const session: OpenSession = { tpm, tail: Promise.resolve(), closed: false };
    const map = new Map(sessions.getStore() ?? []);
    map.set(tcti, session);
    try {
      return await sessions.run(map, fn);
    } finally {
      session.closed = true;
      await session.tail.catch(() => undefined);
    }
  });
}

function openSession(tcti: string): OpenSession | undefined {
  const s = sessions.getStore()?.get(tcti);
  return s && !s.closed ? s : undefined;
}

/**
 * Open the TPM, run `fn`, close it (or run `fn` on the connection of an enclosing
 * {@link withTpmSession}). TPM failures stay `tpm_error` (the TPM refused) or
 * `tpm_unavailable` (no connection, or a warning such as TPM_RC_RETRY: try again later).
 */
export function withTpm<T>(tcti: string, fn: (tpm: Tpm) => Promise<T>): Promise<T> {
  const session = openSession(tcti);
  if (session) {
    // Already inside an operation on this session (a nested call): queueing would deadlock.
    if (insideOperation.getStore() === session) return fn(session.tpm);
    const run = (): Promise<T> => insideOperation.run(session, () => fn(session.tpm));
    const next = session.tail.then(run, run);
    session.tail = next.catch(() => undefined);
    return next;
  }
  return onConnection(tcti, fn);
}

/** The SRK (owner hierarchy, srkTemplateEccP256), loaded from its saved context or created; the caller flushes it. */
function loadSrk(tpm: Tpm, tcti: string): Promise<TpmKey> {
  let saved = srkCache.get(tcti);
  if (!saved) srkCache.set(tcti, (saved = {}));
  return loadSaved(tpm, saved, () => tpm.createSrk());
}

/**
 * Run `fn` with the parent of a TSS2 key: TPM_RH_OWNER means the standard SRK (loaded for
 * the call and flushed after it); a persistent handle (0x81……) is used as it is.
 */
export async function withParent<T>(tpm: Tpm, tcti: string, parent: number, fn: (parent: TpmKey) => Promise<T>): Promise<T> {
  if (parent === OWNER_PARENT) return tpm.withTransient(loadSrk(tpm, tcti), fn);
  if (handleType(parent) !== TPM_HT.PERSISTENT) {
    throw new SigilError('config_invalid', `TPM key parent 0x${parent.toString(16)} is neither TPM_RH_OWNER (0x40000001) nor a persistent handle`);
  }
  return fn(await tpm.readPublic(parent));
}

/** Forget the cached SRK of `tcti` (tests that clear or replace a simulator). */
export function forgetSrk(tcti?: string): void {
  if (tcti === undefined) srkCache.clear();
  else srkCache.delete(tcti);
}
