/**
 * One load-generator worker of `bench/renew-https.ts`: a slice of the agents, each with its own
 * keep-alive TLS connection (CA pin: the pinned root is the only trust anchor, the server must
 * present the issuer's SPIFFE ID), driven by the main thread through {@link WorkerPool} messages.
 *
 * What an agent does per renewal is the real protocol, built with the agent's own code
 * (agent/requests.ts buildRenewRequest): a JWS signed at send time by the CURRENT key, with the
 * current chain in x5c and a CSR of the NEXT key; the answer is verified with the agent's
 * ResponseVerifier (signer chain to the pinned root, issuer identity, signature, request id)
 * before the new key and chain are adopted (or every Nth answer with `--verify-every N`). What is made ahead, outside the timed window: the
 * next keys and their CSR signatures ({@link PreparedKey}), because a real agent can make its
 * next key any time before it renews. A retryable failure resends the SAME request (same request
 * id, so an answer lost after the issuer committed is replayed from its idempotency record).
 */
import { readlinkSync } from 'node:fs';
import type { PeerCertificate } from 'node:tls';
import { buildJoinRequest, buildRenewRequest, type BuiltRequest } from '../../src/agent/requests.js';
import { SigilError } from '../../src/errors.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { loadSigner, parseKeyRef, SoftwareSigner, type KeyRef, type Signer } from '../../src/keystore/index.js';
import { buildCsr } from '../../src/pki/csr.js';
import { expectedIssuerId } from '../../src/pki/chain.js';
import { identityResponseSchemas } from '../../src/protocol/messages.js';
import { ResponseVerifier } from '../../src/protocol/verify-response.js';
import { Http1Connection, Http1ConnectionError } from './http1.js';
import { arrivalTimes, runOpenLoop, seededRandom, type ArrivalKind } from './open-loop.js';
import { ownThreadCpuSeconds } from './proc-cpu.js';
import { poolWorkerData, serveWorker } from './worker-pool.js';
import { startProfile, type CpuProfile } from './cpu-profile.js';

export interface AgentsWorkerData {
  url: string;
  rootPem: string;
  tokens: string[];
  seed: number;
  /** Verify every Nth successful answer in full (1 = all; see {@link answerOf}). */
  verifyEvery: number;
}

export type AgentsRequest =
  | { kind: 'prepare'; keysPerAgent: number }
  | { kind: 'top-up'; keysPerAgent: number }
  | { kind: 'warm' }
  | { kind: 'closed'; startAt: number; durationMs: number; profile?: boolean }
  | { kind: 'open'; startAt: number; durationMs: number; rate: number; arrivals: ArrivalKind; profile?: boolean };

export interface RunResult {
  /** Renewal latency (ms): scheduled time (open loop) or start (closed loop) → verified answer. */
  latencies: Float64Array;
  renewals: number;
  /** Every failed attempt, by error code (a resent request counts once per failure). */
  errors: Record<string, number>;
  resends: number;
  /** Agents that hit an error after which their identity cannot renew any more. */
  stopped: number;
  /** Epoch ms of the last answer (the window ends there when it runs past the deadline). */
  lastDoneAt: number;
  /** CPU seconds this worker thread used during the run. */
  threadCpuS: number;
  /** Next keys that had to be made inside the window (the prepared ones ran out). */
  keysMadeInWindow: number;
  /** Answers verified in full (signature, signer chain, schema) — all of them unless verifyEvery > 1. */
  verified: number;
  /** Open loop: arrivals that waited for a free agent, and how late requests left (ms). */
  waitedForAgent?: number;
  lagMs?: Float64Array;
  /** `profile`: this worker's V8 CPU profile of the window. */
  profile?: CpuProfile;
}

export interface PrepareResult {
  /** This worker's kernel thread id (its CPU shows under /proc/<pid>/task/<tid>). */
  tid: number;
  agents: number;
  keys: number;
  threadCpuS: number;
}

/**
 * A software key made ahead of time whose CSR self-signature is made ahead too: the CSR over a
 * given key is deterministic (buildCsr encodes the same CertificationRequestInfo bytes each
 * time), so when buildRenewRequest asks this key to sign exactly those bytes the stored
 * signature is returned; anything else (the JWS it signs once it is the current key) is signed
 * for real.
 */
class PreparedKey implements Signer {
  readonly storage = 'software' as const;
  readonly exportable = true as const;
  readonly algorithm = 'ES256' as const;
  readonly ref: KeyRef;
  #csrInfo: Buffer | undefined;
  #csrSignature: Buffer | undefined;

  private constructor(private readonly key: SoftwareSigner) {
    this.ref = { storage: 'software', pkcs8Pem: key.toPkcs8Pem() };
  }

  static async make(): Promise<PreparedKey> {
    const k = new PreparedKey(SoftwareSigner.generate());
    await buildCsr(k); // records the CSR signature
    return k;
  }

  publicKeySpki(): Buffer {
    return this.key.publicKeySpki();
  }

  async sign(data: Buffer): Promise<Buffer> {
    if (this.#csrInfo === undefined) {
      this.#csrInfo = Buffer.from(data);
      return (this.#csrSignature = await this.key.sign(data));
    }
    if (this.#csrSignature && data.equals(this.#csrInfo)) return this.#csrSignature;
    return this.key.sign(data);
  }
}

/** Codes after which an identity cannot be renewed any more (the agent would have to join again). */
const TERMINAL = new Set([
  'instance_locked',
  'generation_mismatch',
  'unknown_instance',
  'cert_expired',
  'bot_locked',
  'chain_invalid',
]);
const MAX_ATTEMPTS = 20;
const RETRY_DELAY_MS = 20;

interface Agent {
  conn: Http1Connection;
  signer: Signer;
  chainPem: string[];
  keys: PreparedKey[];
  nextKey: number;
  stopped?: string;
}

const data = poolWorkerData<AgentsWorkerData>();
const url = new URL(data.url);
const root = data.rootPem;
const issuerId = expectedIssuerId(root);
// One verifier per worker: like an agent's IssuerLink, it re-validates the issuer's signer chain
// only when that chain changes, and checks every answer's signature and request id.
// The identity answer schemas built once (an agent daemon builds them per check: issue #19).
const verifier = new ResponseVerifier(identityResponseSchemas());
const clock = (): number => performance.timeOrigin + performance.now();
const agents: Agent[] = [];
let keysMadeInWindow = 0;
let answers = 0;
let verified = 0;

/**
 * The renew result of an answer. Every `verifyEvery`th answer (and the first) goes through the
 * agent's full ResponseVerifier; the others are only decoded and bound to this request id — and
 * anything unexpected in them is handed to the full verifier, so no failure goes unverified.
 * With verifyEvery = 1 (the default) every answer is verified in full.
 */
function answerOf(body: unknown, requestId: string): { chain: string[] } {
  if (answers++ % data.verifyEvery === 0) {
    verified++;
    return verifier.response(body, 'renew', requestId, root).result;
  }
  try {
    const p = JSON.parse(Buffer.from((body as { payload: string }).payload, 'base64url').toString('utf8')) as {
      request_id?: unknown;
      result?: { chain?: unknown };
    };
    const chain = p.result?.chain;
    if (p.request_id === requestId && Array.isArray(chain) && chain.every((c) => typeof c === 'string'))
      return { chain: chain as string[] };
  } catch {
    // fall through to the full verification, which says what is wrong
  }
  verified++;
  return verifier.response(body, 'renew', requestId, root).result;
}

/** The issuer is identified by its SPIFFE ID under the pinned root, as HttpsIssuerClient does. */
function checkIssuerIdentity(_host: string, peer: PeerCertificate): Error | undefined {
  const uris = (peer.subjectaltname ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  return uris.includes(issuerId) ? undefined : new Error(`the server does not carry the issuer SPIFFE ID ${issuerId}`);
}

function connection(): Http1Connection {
  return new Http1Connection({
    host: url.hostname,
    port: Number(url.port),
    ca: root,
    checkServerIdentity: checkIssuerIdentity,
  });
}

/** POST one envelope; a non-200 answer is thrown as the SigilError it carries. */
async function post(conn: Http1Connection, op: 'join' | 'renew', body: string): Promise<unknown> {
  let res;
  try {
    res = await conn.request('POST', `/v1/${op}`, body);
  } catch (e) {
    if (e instanceof Http1ConnectionError) throw new SigilError('issuer_unreachable', e.message, { cause: e });
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(res.body.toString('utf8'));
  } catch {
    throw new SigilError(
      res.status >= 500 ? 'issuer_unreachable' : 'response_invalid',
      `issuer answered HTTP ${res.status} with a non-JSON body`,
    );
  }
  if (res.status === 200) return parsed;
  throw SigilError.fromWire(parsed);
}

async function join(token: string): Promise<Agent> {
  const conn = connection();
  const method = new TokenJoinAgent(token);
  const built = await buildJoinRequest({ method: method.name, evidence: (c) => method.evidence(c), now: Date.now() });
  const res = verifier.response(await post(conn, 'join', built.entry.body), 'join', built.entry.requestId, root);
  return {
    conn,
    signer: loadSigner(parseKeyRef(built.entry.pendingKeyRef!)),
    chainPem: res.result.chain,
    keys: [],
    nextKey: 0,
  };
}

async function nextKey(a: Agent, inWindow: boolean): Promise<PreparedKey> {
  const k = a.keys[a.nextKey];
  if (k) {
    a.keys[a.nextKey++] = undefined as unknown as PreparedKey; // used once; let it be collected
    return k;
  }
  if (inWindow) keysMadeInWindow++;
  return PreparedKey.make();
}

interface Tally {
  latencies: number[];
  errors: Record<string, number>;
  resends: number;
  renewals: number;
  lastDoneAt: number;
}

function newTally(): Tally {
  return { latencies: [], errors: {}, resends: 0, renewals: 0, lastDoneAt: 0 };
}

/**
 * One renewal of agent `a`, its latency counted from `since`: build (JWS by the current key, CSR
 * of the next), send, verify, adopt. A retryable failure resends the same request.
 */
async function renew(a: Agent, since: number, t: Tally | undefined): Promise<void> {
  const key = await nextKey(a, t !== undefined);
  const built: BuiltRequest = await buildRenewRequest({
    current: a.signer,
    chainPem: a.chainPem,
    now: Date.now(),
    newKey: () => Promise.resolve({ signer: key, ref: key.ref }),
  });
  for (let attempt = 1; ; attempt++) {
    try {
      const body = await post(a.conn, 'renew', built.entry.body);
      const res = answerOf(body, built.entry.requestId);
      a.signer = key;
      a.chainPem = res.chain;
      if (t) {
        const done = clock();
        t.latencies.push(done - since);
        t.renewals++;
        t.lastDoneAt = done;
      }
      return;
    } catch (e) {
      const code = e instanceof SigilError ? e.code : `unexpected:${(e as Error)?.name}`;
      const retry = e instanceof SigilError && e.retryable && attempt < MAX_ATTEMPTS;
      if (!t && !retry) throw e; // untimed (warm-up): a failure that will not clear is the run's end
      if (t) t.errors[code] = (t.errors[code] ?? 0) + 1;
      if (retry) {
        if (t) t.resends++;
        await new Promise((r) => setTimeout(r, Math.max(RETRY_DELAY_MS, (e as SigilError).retryAfterMs ?? 0)));
        continue;
      }
      if (TERMINAL.has(code)) a.stopped = code;
      return;
    }
  }
}

function result(t: Tally, cpu0: number, extra: Partial<RunResult> = {}): RunResult {
  return {
    latencies: Float64Array.from(t.latencies),
    renewals: t.renewals,
    errors: t.errors,
    resends: t.resends,
    stopped: agents.filter((a) => a.stopped).length,
    lastDoneAt: t.lastDoneAt,
    threadCpuS: (ownThreadCpuSeconds() ?? NaN) - cpu0,
    keysMadeInWindow,
    verified,
    ...extra,
  };
}

const until = (at: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, at - clock())));

serveWorker<AgentsRequest, PrepareResult | RunResult | null>(async (msg) => {
  switch (msg.kind) {
    case 'prepare': {
      const cpu0 = ownThreadCpuSeconds() ?? NaN;
      // Keys first: making them keeps this event loop busy for seconds, and a kept-alive
      // connection left idle that long would be closed by the issuer (its idle timeout).
      const keys: PreparedKey[][] = [];
      for (let i = 0; i < data.tokens.length; i++) {
        const mine: PreparedKey[] = [];
        for (let k = 0; k < msg.keysPerAgent; k++) mine.push(await PreparedKey.make());
        keys.push(mine);
      }
      for (let i = 0; i < data.tokens.length; i += 25)
        agents.push(...(await Promise.all(data.tokens.slice(i, i + 25).map(join))));
      agents.forEach((a, i) => (a.keys = keys[i]!));
      return {
        tid: Number(readlinkSync('/proc/thread-self').split('/').pop()),
        agents: agents.length,
        keys: agents.length * msg.keysPerAgent,
        threadCpuS: (ownThreadCpuSeconds() ?? NaN) - cpu0,
      };
    }
    case 'top-up': {
      // Before a phase: every agent holds at least keysPerAgent unused next keys.
      const cpu0 = ownThreadCpuSeconds() ?? NaN;
      let made = 0;
      for (const a of agents) {
        a.keys = a.keys.slice(a.nextKey);
        a.nextKey = 0;
        while (a.keys.length < msg.keysPerAgent) {
          a.keys.push(await PreparedKey.make());
          made++;
        }
      }
      return { tid: 0, agents: agents.length, keys: made, threadCpuS: (ownThreadCpuSeconds() ?? NaN) - cpu0 };
    }
    case 'warm':
      await Promise.all(agents.map((a) => renew(a, clock(), undefined)));
      return null;
    case 'closed': {
      keysMadeInWindow = verified = 0;
      const t = newTally();
      await until(msg.startAt);
      const stopProfile = msg.profile ? await startProfile() : undefined;
      const cpu0 = ownThreadCpuSeconds() ?? NaN;
      const deadline = msg.startAt + msg.durationMs;
      await Promise.all(
        agents.map(async (a) => {
          while (!a.stopped && clock() < deadline) await renew(a, clock(), t);
        }),
      );
      const res = result(t, cpu0);
      return stopProfile ? { ...res, profile: await stopProfile() } : res;
    }
    case 'open': {
      keysMadeInWindow = verified = 0;
      const t = newTally();
      const arrivals = arrivalTimes({
        rate: msg.rate,
        kind: msg.arrivals,
        startMs: msg.startAt,
        durationMs: msg.durationMs,
        random: seededRandom(data.seed),
      });
      await until(msg.startAt);
      const stopProfile = msg.profile ? await startProfile() : undefined;
      const cpu0 = ownThreadCpuSeconds() ?? NaN;
      const live = agents.filter((a) => !a.stopped);
      const send = (a: Agent, at: number): Promise<void> =>
        renew(a, at, t).catch((e: unknown) => {
          const code = `unexpected:${(e as Error)?.name}`;
          t.errors[code] = (t.errors[code] ?? 0) + 1;
        });
      const r = await runOpenLoop({ arrivals, clients: live, send, clock });
      const res = result(t, cpu0, { waitedForAgent: r.waitedForClient, lagMs: r.lagMs });
      return stopProfile ? { ...res, profile: await stopProfile() } : res;
    }
  }
});
