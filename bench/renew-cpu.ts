/**
 * The issuer's CPU per renewal (issue #14), in process: `handleRenew` driven directly against a
 * real file-backed SQLite issuer (the data dir `sigil server start` uses, audit key included),
 * no TLS and no load generator in the measurement. Keys and CSRs are made up front; each round
 * signs one renew request per agent (untimed), then runs the round's handler calls with
 * `--inflight` of them at once and counts this process's CPU time (process.cpuUsage) around the
 * handler calls only. Next to it, the crypto floor measured in the same run: the 3 ECDSA P-256
 * verifies (presented leaf, JWS, CSR) and 2 signs (certificate, response) a renewal cannot do
 * without, with node:crypto on pre-imported keys. CPU time, not wall time, so the figure holds
 * while other processes share the machine.
 *
 *   npm run bench -- renew-cpu [--agents 256] [--rounds 8] [--inflight 16] [--warmup 2]
 *   npm run bench -- renew-cpu --inflight 1        (one renewal at a time: no group commit)
 *   npm run bench -- renew-cpu --seed-audit 200000 (an audit log of a long-running issuer first)
 *   npm run bench -- renew-cpu --heap-profile FILE (sampled allocations of the measured rounds' handler calls,
 *                                                   objects the GC collected included: FILE is a .heapprofile,
 *                                                   and the largest allocators per renewal are printed)
 *   npm run bench -- renew-cpu --profile FILE      (V8 CPU profiles of the handler calls only: the last round
 *                                                   at FILE, each earlier measured round at FILE.<round>)
 *
 * Last stdout line: {"bench":"renew-cpu","renewals":…,"inflight":…,"issuer_cpu_us_per_renewal":…,
 *                    "floor_us":…,"ratio":…,"rounds_us":[…]}
 */
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { namedSigner } from '../src/agent/named-signer.js';
import { buildJoinRequest } from '../src/agent/requests.js';
import { TokenJoinAgent } from '../src/join/token/agent.js';
import { loadSigner, parseKeyRef, SoftwareSigner, type Signer } from '../src/keystore/index.js';
import { buildCsr } from '../src/pki/csr.js';
import { fromPem, toPem } from '../src/pki/pem.js';
import { signJws, type Jws } from '../src/protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../src/protocol/messages.js';
import type { RenewRequest } from '../src/protocol/requests.js';
import { runAdminOp } from '../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores } from '../src/server/data-dir.js';
import { createIssuerContext } from '../src/server/issuer.js';
import { handleJoin } from '../src/server/ops/join.js';
import { handleRenew } from '../src/server/ops/renew.js';
import { silentLogger } from '../src/util/log.js';
import { newRequestId } from '../src/util/secret.js';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '8' },
    inflight: { type: 'string', default: '16' },
    warmup: { type: 'string', default: '2' },
    'seed-audit': { type: 'string', default: '0' },
    profile: { type: 'string' },
    'heap-profile': { type: 'string' },
  },
});
const int = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`error: --${name} must be an integer ≥ ${min}\n`);
    process.exit(2);
  }
  return n;
};
const AGENTS = int('agents', values.agents, 1);
const ROUNDS = int('rounds', values.rounds, 1);
const INFLIGHT = int('inflight', values.inflight, 1);
const WARMUP = int('warmup', values.warmup, 0);
/** Audit rows appended before the agents join: a log the size of a long-running issuer's (its indexes deeper, mostly not in cache). */
const SEED_AUDIT = int('seed-audit', values['seed-audit'], 0);
const BOT = 'bench';

interface Agent {
  signer: Signer;
  chainPem: string[];
  /** Pre-made next keys and their CSRs (PEM), one per round. */
  next: Array<{ signer: SoftwareSigner; csrPem: string }>;
}

const cpuUs = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** 3 verifies + 2 signs (P-256, SHA-256) on pre-imported keys: what a renewal cannot do without. */
function cryptoFloorUs(iterations = 2000): number {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const data = Buffer.alloc(600, 7);
  const sig = sign('sha256', data, privateKey);
  const pub = createPublicKey({ key: publicKey.export({ type: 'spki', format: 'der' }), format: 'der', type: 'spki' });
  for (let i = 0; i < 200; i++) verify('sha256', data, pub, sig);
  const t0 = cpuUs();
  for (let i = 0; i < iterations; i++) {
    for (let v = 0; v < 3; v++) if (!verify('sha256', data, pub, sig)) throw new Error('floor: verify failed');
    sign('sha256', data, privateKey);
    sign('sha256', data, privateKey);
  }
  return (cpuUs() - t0) / iterations;
}

async function renewEnvelope(a: Agent, csrPem: string): Promise<Jws> {
  const payload: RenewRequest = {
    v: PROTOCOL_VERSION,
    op: 'renew',
    request_id: newRequestId(),
    timestamp: Date.now(),
    ...namedSigner(a.chainPem),
    csr: csrPem,
    key_storage: 'software',
  };
  return signJws(
    a.signer,
    TYP_REQUEST,
    payload,
    a.chainPem.map((c) => fromPem(c, 'CERTIFICATE')),
  );
}

const resultOf = (jws: Jws): { chain: string[] } =>
  (JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8')) as { result: { chain: string[] } }).result;

/** The sampled heap profile's allocations per renewal, by allocating function (self) — the GC's work list. */
function printAllocators(profile: { head: HeapNode }, renewals: number): void {
  const self = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapNode): void => {
    const f = n.callFrame;
    const size = n.selfSize;
    if (size > 0) {
      const where = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(src|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
      self.set(where, (self.get(where) ?? 0) + size);
      total += size;
    }
    for (const c of n.children) walk(c);
  };
  walk(profile.head);
  console.log(`allocated per renewal (sampled): ${(total / renewals / 1024).toFixed(1)} KB; largest allocators:`);
  for (const [where, size] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25))
    console.log(`  ${(size / renewals / 1024).toFixed(2).padStart(6)} KB  ${where}`);
}
interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-renew-cpu-'));
  try {
    initDataDir(dir, 'example.org');
    const stores = openIssuerStores(dir, { createAuditKey: true });
    const ctx = createIssuerContext({ ca: loadCaMaterial(dir), stores, log: silentLogger() });
    const yaml = `kind: role\nname: bench-edge\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: ${BOT}\nspec: { roles: [bench-edge] }\n`;
    await runAdminOp(stores, 'apply', { yaml, source: 'bench' });
    for (let done = 0; done < SEED_AUDIT;) {
      const n = Math.min(10_000, SEED_AUDIT - done);
      await stores.withWriteTx(async (tx) => {
        for (let i = 0; i < n; i++)
          await tx.audit.append(
            {
              action: 'renew',
              outcome: 'ok',
              actor: 'agent',
              bot: BOT,
              instanceId: `seed-${(done + i) % 5000}-${randomBytes(8).toString('hex')}`,
              method: 'token',
              remote: '127.0.0.1',
              details: { serial: randomBytes(16).toString('hex'), previous_serial: randomBytes(16).toString('hex') },
            },
            Date.now(),
          );
      });
      done += n;
    }
    if (SEED_AUDIT > 0) console.log(`seeded ${SEED_AUDIT} audit rows`);

    const total = WARMUP + ROUNDS;
    const agents: Agent[] = [];
    for (let i = 0; i < AGENTS; i++) {
      const { token } = (await runAdminOp(stores, 'token.create', { bot: BOT, ttl: '1h' })) as { token: string };
      const method = new TokenJoinAgent(token);
      const built = await buildJoinRequest({ method: 'token', evidence: (c) => method.evidence(c), now: Date.now() });
      const res = await handleJoin(ctx, built.envelope, null);
      const next: Agent['next'] = [];
      for (let r = 0; r < total; r++) {
        const signer = SoftwareSigner.generate();
        next.push({ signer, csrPem: toPem('CERTIFICATE REQUEST', await buildCsr(signer)) });
      }
      agents.push({ signer: loadSigner(parseKeyRef(built.entry.pendingKeyRef!)), chainPem: resultOf(res).chain, next });
    }
    console.log(`joined ${AGENTS} agents; ${AGENTS * total} keys and CSRs made up front`);

    const profiler = values.profile ? new Session() : undefined;
    if (profiler) {
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: 50 });
    }
    const heap = values['heap-profile'] ? new Session() : undefined;
    if (heap) {
      heap.connect();
      await heap.post('HeapProfiler.enable');
    }
    const roundsUs: number[] = [];
    for (let r = 0; r < total; r++) {
      const envelopes = await Promise.all(agents.map((a) => renewEnvelope(a, a.next[r]!.csrPem)));
      const answers: Jws[] = new Array<Jws>(AGENTS);
      let nextIndex = 0;
      const worker = async (): Promise<void> => {
        for (let i = nextIndex++; i < AGENTS; i = nextIndex++) answers[i] = await handleRenew(ctx, envelopes[i], null);
      };
      // Profiled: every measured round (the handler calls only; the envelopes are signed before).
      if (profiler && r >= WARMUP) await profiler.post('Profiler.start');
      if (heap && r === WARMUP)
        await heap.post('HeapProfiler.startSampling', {
          samplingInterval: 1024,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true,
        });
      const t0 = cpuUs();
      await Promise.all(Array.from({ length: Math.min(INFLIGHT, AGENTS) }, worker));
      const us = (cpuUs() - t0) / AGENTS;
      if (profiler && r >= WARMUP) {
        const { profile } = await profiler.post('Profiler.stop');
        // The last round at FILE (as before), each earlier measured round at FILE.<round>.
        writeFileSync(r === total - 1 ? values.profile! : `${values.profile!}.${r}`, JSON.stringify(profile));
      }
      if (r >= WARMUP) roundsUs.push(us);
      agents.forEach((a, i) => {
        a.chainPem = resultOf(answers[i]!).chain;
        a.signer = a.next[r]!.signer;
      });
    }
    if (heap) {
      const { profile } = await heap.post('HeapProfiler.stopSampling');
      writeFileSync(values['heap-profile']!, JSON.stringify(profile));
      printAllocators(profile, AGENTS * ROUNDS);
    }
    await stores.close();

    const sorted = [...roundsUs].sort((x, y) => x - y);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    const floor = cryptoFloorUs();
    const ratio = median / floor;
    console.log(
      `issuer CPU per renewal: ${median.toFixed(1)} µs (median of ${ROUNDS} rounds of ${AGENTS}, ${INFLIGHT} in flight; rounds ${roundsUs.map((u) => u.toFixed(0)).join(' ')})`,
    );
    console.log(`crypto floor (3 verifies + 2 signs, P-256): ${floor.toFixed(1)} µs; ratio ${ratio.toFixed(2)}×`);
    console.log(
      JSON.stringify({
        bench: 'renew-cpu',
        renewals: AGENTS * ROUNDS,
        inflight: INFLIGHT,
        issuer_cpu_us_per_renewal: Number(median.toFixed(1)),
        floor_us: Number(floor.toFixed(1)),
        ratio: Number(ratio.toFixed(2)),
        rounds_us: roundsUs.map((u) => Number(u.toFixed(1))),
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
