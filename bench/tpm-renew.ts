/**
 * What a fresh quote adds to a TPM renewal (issue #16), on swtpm, next to the raw TPM time of the
 * commands it adds, measured in the same run against the same swtpm:
 *
 *   with quote     a renewal whose request carries fresh boot-state evidence. The agent makes both
 *                  renewal proofs on one TPM connection (join/tpm/fresh-evidence.ts
 *                  tpmRenewalProofs, what the agent's tpm method does): the AK loaded once
 *                  certifies the new key (TPM2_Certify) and quotes the profile's PCRs with the
 *                  renewal's binding (TPM2_PCR_Read, TPM2_Quote). The issuer judges the quote
 *                  against lab-gateway-v1 (quote signature, binding, PCR digest, clock, profile)
 *   without quote  the same renewal without it: the same connection, SRK, AK and certification
 *                  (join/tpm/ak-store.ts certifyWithAk); the rule's max_attestation_age admits it
 *                  while the last good attestation is fresh
 *   raw TPM        the swtpm round trips of exactly the commands the quote adds — the TPM commands
 *                  of a "with" renewal's proofs that its paired "without" renewal did not send
 *                  (counted per command code; printed: today PCR_Read and Quote) — each from
 *                  writing the command to the socket to its complete response (src/tpm's socket
 *                  transport), so nothing the client computes is in it
 *
 * Both kinds are otherwise the same renewal end to end: a new TPM identity key, CSR, real HTTPS to
 * an in-process issuer, verified answer. They are interleaved (A, B, A, B, …) so that drift on a
 * shared machine hits both alike; "added" is the median of the paired differences (A_i − B_i).
 * CPU per renewal (process.cpuUsage: agent and issuer, one process; the swtpm's own CPU is not in
 * it) is printed too, and split: the issuer's CPU inside its request handling, the rest the agent's.
 *
 *   npm run bench -- tpm-renew [--pairs 30]
 *
 * Target: added time ≤ 1.5 × the raw TPM time of the added commands.
 * Needs swtpm, swtpm_setup, swtpm_localca (scripts/setup.sh).
 * Last stdout line: {"bench":"tpm-renew","pairs":…,"with_p50_ms":…,"without_p50_ms":…,"added_p50_ms":…,
 *   "added_raw_tpm_p50_ms":…,"tpm_commands_added":[…],"ratio":…,"within_1_5x":…,"pcr_read_raw_p50_ms":…,
 *   "ratio_vs_pcr_read_and_quote":…,
 *   "added_agent_side_p50_ms":…,"added_issuer_p50_ms":…,"agent_side_ratio":…,"agent_side_within_1_5x":…,
 *   "added_cpu_ratio":…,
 *   "with_cpu_p50_ms":…,"without_cpu_p50_ms":…,"added_cpu_p50_ms":…,"added_agent_cpu_p50_ms":…,
 *   "added_issuer_cpu_p50_ms":…,"tpm_connects_added":…,"proofs_call_added_p50_ms":…,
 *   "proofs_call_added_cpu_p50_ms":…,"breakdown_ms":{…}}
 *
 * The issuer runs in this process: its share of the added time (from the https.Server's 'request'
 * event to the reply's res.end(), whichever route serves it) is printed apart, and the agent's share
 * is the added time without it — as bench/tpm-join.ts judges its target.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { Server as HttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildRenewRequest } from '../src/agent/requests.js';
import { renewalBinding } from '../src/attest/binding.js';
import { runJoinExchange } from '../src/join/exchange.js';
import type { AgentSettings } from '../src/join/registry.js';
import { TpmJoinAgent } from '../src/join/tpm/agent.js';
import { certifyWithAk, saveAk } from '../src/join/tpm/ak-store.js';
import { acceptAttestation, saveJoinAttestation, tpmRenewalProofs } from '../src/join/tpm/fresh-evidence.js';
import { TpmSigner } from '../src/keystore/tpm.js';
import { TpmAccess } from '../src/keystore/tpm-access.js';
import { requestHash } from '../src/protocol/verify-response.js';
import { PCR_BANK_ALGS } from '../src/join/tpm/wire.js';
import { SocketTransport } from '../src/tpm/transport/socket.js';
import { createLocalCa, createSwtpm, simulateBoot } from '../test/helpers/swtpm.js';
import { startTpmBenchIssuer } from './lib/tpm-issuer.js';

const { values: args } = parseArgs({ options: { pairs: { type: 'string', default: '30' } } });
const PAIRS = Number(args.pairs);
if (!Number.isInteger(PAIRS) || PAIRS < 10) throw new Error('--pairs must be an integer >= 10');
const WARMUP = 3;

/** TPM 2.0 Part 2 §6.5 command codes named in the breakdown. */
const CC: Record<number, string> = {
  0x157: 'Load',
  0x161: 'ContextLoad',
  0x162: 'ContextSave',
  0x131: 'CreatePrimary',
  0x158: 'Quote',
  0x17e: 'PCR_Read',
  0x165: 'FlushContext',
  0x148: 'Certify',
  0x153: 'Create',
  0x15d: 'Sign',
};

const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;

// --- the TPM round trips: the socket transport's send(), wrapped, recorded while `inProofs` ---
const meter = {
  inProofs: false,
  /** The commands of the current renewal's proofs call, in order, with their round trips. */
  cmds: [] as Array<{ name: string; ms: number }>,
  /** The proofs call (its TPM round trips and the client's work around them). */
  proofsMs: 0,
  /** Its CPU time (process.cpuUsage): the agent's work around those commands, and theirs in src/tpm. */
  proofsCpuMs: 0,
  connects: 0,
  issuerMs: 0,
  issuerCpuMs: 0,
  /** While set, the round trips of a standalone PCR_Read (see `pcrReadRaw` below) land here. */
  probe: undefined as number[] | undefined,
};
const rawSend = SocketTransport.prototype.send;
SocketTransport.prototype.send = async function (this: SocketTransport, cmd: Uint8Array): Promise<Uint8Array> {
  const t0 = performance.now();
  try {
    return await rawSend.call(this, cmd);
  } finally {
    const cc = Buffer.from(cmd).readUInt32BE(6);
    if (meter.inProofs) meter.cmds.push({ name: CC[cc] ?? `0x${cc.toString(16)}`, ms: performance.now() - t0 });
    else if (meter.probe && cc === 0x17e) meter.probe.push(performance.now() - t0);
  }
};
// --- the issuer's share: from a request's 'request' event to its res.end(), on the issuer's
// https.Server itself. Fastify's onRequest/onSend hooks (bench/lib/tpm-issuer.ts) no longer see a
// renewal: POST /v1/renew is served beside fastify (transport/https/fast-route.ts, issue #14).
// The CPU between those two points is the issuer's: the in-process agent is waiting for the reply.
const rawEmit = HttpsServer.prototype.emit;
HttpsServer.prototype.emit = function (this: HttpsServer, event: string | symbol, ...a: unknown[]): boolean {
  if (event === 'request') {
    const res = a[1] as ServerResponse;
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const end = res.end;
    res.end = function (this: ServerResponse, ...e: unknown[]) {
      meter.issuerMs += performance.now() - t0;
      meter.issuerCpuMs += cpuMs(process.cpuUsage(cpu0));
      return (end as (...x: unknown[]) => ServerResponse).apply(this, e);
    } as typeof res.end;
  }
  return rawEmit.apply(this, [event, ...a] as Parameters<typeof rawEmit>);
} as typeof HttpsServer.prototype.emit;
const rawConnect = SocketTransport.connect.bind(SocketTransport);
SocketTransport.connect = async (...a: Parameters<typeof rawConnect>): Promise<SocketTransport> => {
  if (meter.inProofs) meter.connects++;
  return rawConnect(...a);
};

/**
 * The commands `withQ` sent that `without` did not (a multiset difference by command name), and
 * their round trips in `withQ` (for a name sent k more times, its last k round trips).
 */
function addedCommands(
  withQ: ReadonlyArray<{ name: string; ms: number }>,
  without: ReadonlyArray<{ name: string; ms: number }>,
): { names: string[]; ms: number } {
  const count = (cs: ReadonlyArray<{ name: string }>): Map<string, number> => {
    const m = new Map<string, number>();
    for (const c of cs) m.set(c.name, (m.get(c.name) ?? 0) + 1);
    return m;
  };
  const inWith = count(withQ);
  const inWithout = count(without);
  const taken = new Map<string, number>();
  const extra: Array<{ name: string; ms: number }> = [];
  for (const c of [...withQ].reverse()) {
    const more = (inWith.get(c.name) ?? 0) - (inWithout.get(c.name) ?? 0);
    const t = taken.get(c.name) ?? 0;
    if (t < more) {
      extra.push(c);
      taken.set(c.name, t + 1);
    }
  }
  return { names: extra.map((c) => c.name).sort(), ms: extra.reduce((t, c) => t + c.ms, 0) };
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const r2 = (x: number): number => Math.round(x * 100) / 100;

const work = mkdtempSync(join(tmpdir(), 'sigil-bench-tpm-renew-'));
const ca = await createLocalCa({ dir: join(work, 'ca') });
const tpm = await createSwtpm({ localCa: ca, dir: join(work, 'tpm') });
const dataDir = join(work, 'issuer');
try {
  await tpm.start();
  const logFile = join(work, 'boot.log');
  writeFileSync(logFile, (await simulateBoot(tpm)).eventLog);

  // --- the issuer, in process, on real HTTPS (bench/lib/tpm-issuer.ts) ------------------------
  const { client, verifier, root, close } = await startTpmBenchIssuer({
    dataDir,
    ekCaFiles: [ca.rootCert, ca.issuerCert],
    ruleExtra: 'max_attestation_age: 1h',
    // Not `meter`: its fastify hooks would count again what the server-level wrapper above counts.
    meter: { issuerMs: 0 },
  });

  // --- one join, keeping what the agent keeps (the AK, the PCR selection and counters) --------
  const access = new TpmAccess(tpm.tcti);
  const settings = new Map<string, string>();
  const agentSettings: AgentSettings = {
    getSetting: (k) => settings.get(k),
    setSetting: (k, v) => void settings.set(k, v),
  };
  let identity: TpmSigner | undefined;
  const method = new TpmJoinAgent({ tpm: access, identityKey: () => identity, eventLog: logFile });
  const joined = await runJoinExchange({
    method,
    identity: async () => (identity = await TpmSigner.create(access)),
    send: (env) => client.post('join', env),
    rootPem: () => root,
    verifier,
  });
  saveAk(agentSettings, method.attestationKey(joined.requestId)!);
  saveJoinAttestation(agentSettings, method.joinAttestation(joined.requestId), method.kept);
  if (!settings.get('tpm.attestation')) throw new Error('the join left no attestation state: is the rule profiled?');
  let current = { signer: identity!, chain: joined.payload.result.chain };

  interface Sample {
    ms: number;
    cpu: number;
    issuerMs: number;
    issuerCpu: number;
    proofsMs: number;
    proofsCpu: number;
    connects: number;
    cmds: Array<{ name: string; ms: number }>;
  }
  /** One renewal end to end; with `quote`, carrying fresh evidence made with the certification. */
  async function renew(quote: boolean): Promise<Sample> {
    Object.assign(meter, { cmds: [], proofsMs: 0, proofsCpuMs: 0, connects: 0, issuerMs: 0, issuerCpuMs: 0 });
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let newSigner: TpmSigner | undefined;
    let evidence: Record<string, unknown> | undefined;
    const metered = async <T>(fn: () => Promise<T>): Promise<T> => {
      meter.inProofs = true;
      const p0 = performance.now();
      const c0 = process.cpuUsage();
      try {
        return await fn();
      } finally {
        meter.proofsCpuMs += cpuMs(process.cpuUsage(c0));
        meter.proofsMs += performance.now() - p0;
        meter.inProofs = false;
      }
    };
    const built = await buildRenewRequest({
      current: current.signer,
      chainPem: current.chain,
      now: Date.now(),
      newKey: async () => {
        newSigner = await TpmSigner.create(access);
        return { signer: newSigner, ref: newSigner.ref };
      },
      // What the agent's tpm method does (src/agent/agent.ts renewalProofHooks): with a quote, both
      // proofs on one connection; without, the certification alone.
      attest: (key, requestId) =>
        metered(async () => {
          if (!quote) return certifyWithAk(agentSettings, key as TpmSigner, requestId, method.kept);
          const spki = key.publicKeySpki();
          const proofs = await tpmRenewalProofs(
            method,
            agentSettings,
            key as TpmSigner,
            requestId,
            renewalBinding(requestId, spki),
          );
          evidence = proofs.evidence;
          return proofs.keyProof;
        }),
      ...(quote ? { evidence: async () => evidence } : {}),
    });
    const body = await client.post('renew', built.envelope);
    const r = verifier.responseOrError(body, 'renew', built.entry.requestId, requestHash(built.envelope), root).result;
    if (quote) acceptAttestation(agentSettings, method.kept);
    current = { signer: newSigner!, chain: r.chain };
    const ms = performance.now() - t0;
    return {
      ms,
      cpu: cpuMs(process.cpuUsage(cpu0)),
      issuerMs: meter.issuerMs,
      issuerCpu: meter.issuerCpuMs,
      proofsMs: meter.proofsMs,
      proofsCpu: meter.proofsCpuMs,
      connects: meter.connects,
      cmds: meter.cmds,
    };
  }

  // The raw round trip of a PCR_Read of the quoted selection, made on its own between pairs: since
  // the agent quotes with the values of its last quote when the TPM's digest is theirs
  // (join/tpm/fresh-evidence.ts quoteKept), a steady-state quote adds TPM2_Quote alone. The ratio
  // against PCR_Read + Quote, what a quote added before, is printed beside the bench's own.
  const quotedBanks = method.kept
    .attestation(agentSettings)!
    .pcr_selection.map((s) => ({ hash: PCR_BANK_ALGS[s.bank], pcrs: s.pcrs }));
  async function pcrReadRaw(): Promise<number> {
    meter.probe = [];
    try {
      await access.run((t) => t.pcrRead(quotedBanks));
      return meter.probe.reduce((x, y) => x + y, 0);
    } finally {
      meter.probe = undefined;
    }
  }

  const A: Sample[] = [];
  const B: Sample[] = [];
  const pcrReads: number[] = [];
  for (let i = 0; i < WARMUP + PAIRS; i++) {
    // Alternate which goes first, so neither always follows the other.
    const [a, b] =
      i % 2 === 0
        ? [await renew(true), await renew(false)]
        : (([y, x]) => [x, y])([await renew(false), await renew(true)]);
    if (i < WARMUP) continue;
    A.push(a!);
    B.push(b!);
    pcrReads.push(await pcrReadRaw());
  }

  const p50 = (xs: number[]): number => pct(xs, 50);
  const pairs = A.map((a, i) => ({ a, b: B[i]!, added: addedCommands(a.cmds, B[i]!.cmds) }));
  const addedNames = [...new Set(pairs.map((p) => p.added.names.join('+')))];
  const added = p50(pairs.map(({ a, b }) => a.ms - b.ms));
  const rawP50 = p50(pairs.map((p) => p.added.ms));
  const addedCpu = p50(pairs.map(({ a, b }) => a.cpu - b.cpu));
  const addedIssuerCpu = p50(pairs.map(({ a, b }) => a.issuerCpu - b.issuerCpu));
  const addedAgentCpu = p50(pairs.map(({ a, b }) => a.cpu - a.issuerCpu - (b.cpu - b.issuerCpu)));
  // The agent's share of the added time: the paired difference without the issuer's handling.
  const addedAgent = p50(pairs.map(({ a, b }) => a.ms - a.issuerMs - (b.ms - b.issuerMs)));
  const addedIssuer = p50(pairs.map(({ a, b }) => a.issuerMs - b.issuerMs));
  const proofsAdded = p50(pairs.map(({ a, b }) => a.proofsMs - b.proofsMs));
  const proofsCpuAdded = p50(pairs.map(({ a, b }) => a.proofsCpu - b.proofsCpu));
  const connectsAdded = p50(pairs.map(({ a, b }) => a.connects - b.connects));
  // Mean round trip per command name, over every "with" renewal's proofs.
  const byName = new Map<string, { ms: number; n: number }>();
  for (const c of A.flatMap((a) => a.cmds)) {
    const e = byName.get(c.name) ?? { ms: 0, n: 0 };
    byName.set(c.name, { ms: e.ms + c.ms, n: e.n + 1 });
  }
  const breakdown = Object.fromEntries([...byName].map(([k, v]) => [k, r2(v.ms / v.n)]));
  const ratio = added / rawP50;
  const pcrReadP50 = p50(pcrReads);
  // Only when the quote adds Quote alone: then PCR_Read + Quote is the denominator of before.
  const quoteOnly = addedNames.length === 1 && addedNames[0] === 'Quote';
  const ratioWithPcrRead = quoteOnly ? added / (rawP50 + pcrReadP50) : ratio;
  const agentRatio = addedAgent / rawP50;
  // The software the quote adds (agent + issuer CPU) against the command's own TPM time: what a
  // faster or slower TPM does not change (docs/performance.md "Session 10": on swtpm the wall
  // ratio cannot reach 1.5x, the agent's side alone being 1.2-1.4x the command it waits for).
  const cpuRatio = addedCpu / rawP50;
  process.stdout.write(
    [
      `tpm-renew on swtpm, ${PAIRS} interleaved pairs (after ${WARMUP} warm-up pairs); a shared machine: read CPU before wall time`,
      `  renewal with quote      p50 ${r2(p50(A.map((a) => a.ms)))} ms   cpu p50 ${r2(p50(A.map((a) => a.cpu)))} ms`,
      `  renewal without quote   p50 ${r2(p50(B.map((b) => b.ms)))} ms   cpu p50 ${r2(p50(B.map((b) => b.cpu)))} ms`,
      `  added (paired p50)      ${r2(added)} ms wall; cpu ${r2(addedCpu)} ms = agent ${r2(addedAgentCpu)} + issuer ${r2(addedIssuerCpu)} (each a paired p50)`,
      `  commands the quote adds: ${addedNames.join(' | ')}; their raw TPM time p50 ${r2(rawP50)} ms; TPM connections added: ${connectsAdded}`,
      `  per command in the proofs call (mean): ${JSON.stringify(breakdown)}`,
      `  of the added time: agent side ${r2(addedAgent)} ms (the proofs call ${r2(proofsAdded)} ms of it, its CPU ${r2(proofsCpuAdded)} ms), issuer's handling ${r2(addedIssuer)} ms`,
      `  added / raw TPM = ${r2(ratio)} end to end; agent side / raw TPM = ${r2(agentRatio)} (target <= 1.5)`,
      `  added CPU (agent + issuer) / raw TPM = ${r2(cpuRatio)}`,
      `  a PCR_Read of the quoted PCRs alone (between pairs): raw p50 ${r2(pcrReadP50)} ms; added / raw (PCR_Read + Quote) = ${r2(ratioWithPcrRead)}`,
      '',
    ].join('\n'),
  );
  process.stdout.write(
    JSON.stringify({
      bench: 'tpm-renew',
      pairs: PAIRS,
      with_p50_ms: r2(p50(A.map((a) => a.ms))),
      without_p50_ms: r2(p50(B.map((b) => b.ms))),
      added_p50_ms: r2(added),
      added_raw_tpm_p50_ms: r2(rawP50),
      tpm_commands_added: addedNames,
      ratio: r2(ratio),
      within_1_5x: ratio <= 1.5,
      pcr_read_raw_p50_ms: r2(pcrReadP50),
      ratio_vs_pcr_read_and_quote: r2(ratioWithPcrRead),
      added_agent_side_p50_ms: r2(addedAgent),
      added_issuer_p50_ms: r2(addedIssuer),
      agent_side_ratio: r2(agentRatio),
      agent_side_within_1_5x: agentRatio <= 1.5,
      added_cpu_ratio: r2(cpuRatio),
      with_cpu_p50_ms: r2(p50(A.map((a) => a.cpu))),
      without_cpu_p50_ms: r2(p50(B.map((b) => b.cpu))),
      added_cpu_p50_ms: r2(addedCpu),
      added_agent_cpu_p50_ms: r2(addedAgentCpu),
      added_issuer_cpu_p50_ms: r2(addedIssuerCpu),
      tpm_connects_added: connectsAdded,
      proofs_call_added_p50_ms: r2(proofsAdded),
      proofs_call_added_cpu_p50_ms: r2(proofsCpuAdded),
      breakdown_ms: breakdown,
    }) + '\n',
  );
  await close();
} finally {
  await tpm.destroy();
  ca.destroy();
  rmSync(work, { recursive: true, force: true });
}
