/**
 * What the HTTPS route costs the issuer per renewal, fastify's pipeline against the fast path
 * (src/transport/https/fast-route.ts; issue #14), measured so that other processes on the machine
 * hit both sides alike: ONE issuer context in this process serves two TLS listeners — one with
 * the fast path, one serving /v1/renew through fastify — and rounds of real renewals alternate
 * between them (A B B A …). A worker thread is the client (keep-alive TLS connections, requests
 * signed before the round); the figure is the CPU time of this process's main thread (the event
 * loop that runs the issuer) per renewal, from /proc/thread-self/schedstat (ns), per round.
 *
 *   npm run bench -- https-route [--agents 256] [--rounds 16] [--connections 16] [--warmup 2]
 *   npm run bench -- https-route --replay   (every round re-sends the first round's requests: answered
 *                                           from the idempotency record — one JWS verify, one sign, no
 *                                           writes — so the route's share of the CPU is larger and
 *                                           less noisy; its bytes in and out are a renewal's)
 *
 * Last stdout line: {"bench":"https-route","fast_us":…,"fastify_us":…,"saved_us":…,"rounds":…}
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { buildJoinRequest } from '../src/agent/requests.js';
import { TokenJoinAgent } from '../src/join/token/agent.js';
import { loadSigner, parseKeyRef, SoftwareSigner, type Signer } from '../src/keystore/index.js';
import { buildCsr } from '../src/pki/csr.js';
import { fromPem, toPem } from '../src/pki/pem.js';
import { signJws } from '../src/protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../src/protocol/messages.js';
import type { RenewRequest } from '../src/protocol/requests.js';
import { runAdminOp } from '../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores, paths } from '../src/server/data-dir.js';
import { createIssuerContext } from '../src/server/issuer.js';
import { handleJoin } from '../src/server/ops/join.js';
import { buildHttpsServer } from '../src/transport/https/server.js';
import { namedSigner } from '../src/agent/named-signer.js';
import { silentLogger } from '../src/util/log.js';
import { newRequestId } from '../src/util/secret.js';
import { Http1Connection } from './lib/http1.js';

interface ClientJob {
  port: number;
  bodies: string[];
}

if (!isMainThread) {
  // The client: one keep-alive TLS connection per slot and port, every body posted once.
  const { rootPem, connections } = workerData as { rootPem: string; connections: number };
  const pools = new Map<number, Http1Connection[]>();
  parentPort!.on('message', async (job: ClientJob) => {
    const conns =
      pools.get(job.port) ??
      Array.from(
        { length: connections },
        () =>
          new Http1Connection({ host: '127.0.0.1', port: job.port, ca: rootPem, checkServerIdentity: () => undefined }),
      );
    pools.set(job.port, conns);
    const answers: string[] = new Array<string>(job.bodies.length);
    let next = 0;
    await Promise.all(
      conns.map(async (c) => {
        for (let i = next++; i < job.bodies.length; i = next++) {
          const r = await c.request('POST', '/v1/renew', job.bodies[i]!);
          if (r.status !== 200) throw new Error(`renewal refused: HTTP ${r.status} ${r.body.toString('utf8')}`);
          answers[i] = r.body.toString('utf8');
        }
      }),
    );
    parentPort!.postMessage(answers);
  });
} else {
  await main();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      agents: { type: 'string', default: '256' },
      rounds: { type: 'string', default: '16' },
      connections: { type: 'string', default: '16' },
      warmup: { type: 'string', default: '2' },
      replay: { type: 'boolean', default: false },
    },
  });
  const AGENTS = Number(values.agents);
  const ROUNDS = Number(values.rounds);
  const WARMUP = Number(values.warmup);
  const CONNECTIONS = Number(values.connections);
  const total = WARMUP + ROUNDS;

  const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-https-route-'));
  initDataDir(dir, 'example.org');
  const stores = openIssuerStores(dir, { createAuditKey: true });
  const ctx = createIssuerContext({ ca: loadCaMaterial(dir), stores, log: silentLogger() });
  const rootPem = readFileSync(paths(dir).rootCert, 'utf8');
  await runAdminOp(stores, 'apply', {
    yaml: 'kind: role\nname: r\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: b\nspec: { roles: [r] }\n',
  });
  const agents: Array<{ signer: Signer; chainPem: string[]; next: Array<{ signer: Signer; csrPem: string }> }> = [];
  for (let i = 0; i < AGENTS; i++) {
    const { token } = (await runAdminOp(stores, 'token.create', { bot: 'b', ttl: '1h' })) as { token: string };
    const method = new TokenJoinAgent(token);
    const built = await buildJoinRequest({ method: 'token', evidence: (c) => method.evidence(c), now: Date.now() });
    const res = await handleJoin(ctx, built.envelope, null);
    const next: Array<{ signer: Signer; csrPem: string }> = [];
    for (let r = 0; r < total; r++) {
      const signer = SoftwareSigner.generate();
      next.push({ signer, csrPem: toPem('CERTIFICATE REQUEST', await buildCsr(signer)) });
    }
    agents.push({
      signer: loadSigner(parseKeyRef(built.entry.pendingKeyRef!)),
      chainPem: chainOf(payloadOf(res.payload)),
      next,
    });
  }

  const servers = await Promise.all(
    [true, false].map(async (fastRenew) => {
      const app = buildHttpsServer({ ctx, fastRenew });
      await app.listen({ host: '127.0.0.1', port: 0 });
      return { app, port: (app.server.address() as AddressInfo).port, name: fastRenew ? 'fast' : 'fastify' };
    }),
  );
  const client = new Worker(new URL('./lib/ts-worker.mjs', import.meta.url), {
    workerData: { entry: import.meta.url, rootPem, connections: CONNECTIONS },
  });
  const post = (port: number, bodies: string[]): Promise<string[]> =>
    new Promise((resolve, reject) => {
      client.once('message', resolve);
      client.once('error', reject);
      client.postMessage({ port, bodies } satisfies ClientJob);
    });

  const perSide: Record<string, number[]> = { fast: [], fastify: [] };
  let first: string[] | undefined;
  for (let r = 0; r < total; r++) {
    // A B B A: neither side always runs first after the envelopes are signed.
    const s = servers[[0, 1, 1, 0][r % 4]!]!;
    const bodies =
      (values.replay && first) ||
      (await Promise.all(
        agents.map(async (a) => {
          const payload: RenewRequest = {
            v: PROTOCOL_VERSION,
            op: 'renew',
            request_id: newRequestId(),
            timestamp: Date.now(),
            ...namedSigner(a.chainPem),
            csr: a.next[r]!.csrPem,
            key_storage: 'software',
          };
          const x5c = a.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
          return JSON.stringify(await signJws(a.signer, TYP_REQUEST, payload, x5c));
        }),
      ));
    const t0 = threadCpuSeconds();
    const answers = await post(s.port, bodies);
    const us = ((threadCpuSeconds() - t0) * 1e6) / AGENTS;
    if (r >= WARMUP) perSide[s.name]!.push(us);
    if (values.replay) {
      first ??= bodies;
      continue;
    }
    agents.forEach((a, i) => {
      a.chainPem = chainOf(payloadOf((JSON.parse(answers[i]!) as { payload: string }).payload));
      a.signer = a.next[r]!.signer;
    });
  }
  await client.terminate();
  for (const s of servers) await s.app.close();
  await stores.close();
  rmSync(dir, { recursive: true, force: true });

  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const fast = median(perSide.fast!);
  const slow = median(perSide.fastify!);
  console.log(
    `main-thread CPU per ${values.replay ? 'replayed ' : ''}renewal over HTTPS, ${AGENTS} per round, ${CONNECTIONS} connections:`,
  );
  console.log(
    `  fast path:  median ${fast.toFixed(1)} µs  (rounds ${perSide.fast!.map((x) => x.toFixed(0)).join(' ')})`,
  );
  console.log(
    `  fastify:    median ${slow.toFixed(1)} µs  (rounds ${perSide.fastify!.map((x) => x.toFixed(0)).join(' ')})`,
  );
  console.log(`  saved by the fast path: ${(slow - fast).toFixed(1)} µs per renewal`);
  console.log(
    JSON.stringify({
      bench: 'https-route',
      replay: values.replay,
      agents: AGENTS,
      rounds: ROUNDS,
      fast_us: round(fast),
      fastify_us: round(slow),
      saved_us: round(slow - fast),
      fast_rounds_us: perSide.fast!.map(round),
      fastify_rounds_us: perSide.fastify!.map(round),
    }),
  );
}

/** CPU time of the calling thread in seconds, at nanosecond resolution (schedstat: time on a CPU). */
function threadCpuSeconds(): number {
  return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e9;
}
function payloadOf(b64: string): unknown {
  return JSON.parse(Buffer.from(b64, 'base64url').toString('utf8'));
}
function chainOf(payload: unknown): string[] {
  return (payload as { result: { chain: string[] } }).result.chain;
}
function round(x: number): number {
  return Math.round(x * 10) / 10;
}
