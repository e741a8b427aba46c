/**
 * What a fresh quote adds to a TPM renewal (issue #16), on swtpm, next to the raw TPM time of the
 * commands it adds, measured in the same run against the same swtpm:
 *
 *   with quote     a renewal whose request carries fresh boot-state evidence: the join method's
 *                  freshEvidence (TPM2_Load of the AK, TPM2_Quote over the profile's PCRs with the
 *                  renewal's binding, TPM2_PCR_Read, TPM2_FlushContext), judged by the issuer
 *                  against lab-gateway-v1 (quote signature, binding, PCR digest, profile)
 *   without quote  the same renewal without it (the rule's max_attestation_age admits it while
 *                  the last good attestation is fresh)
 *   raw TPM        the swtpm round trips of the commands freshEvidence sent — from writing each
 *                  command to the socket to its complete response (src/tpm's socket transport),
 *                  so nothing the client computes is in it — per renewal, and Quote + PCR_Read alone
 *
 * Both kinds are otherwise the same renewal end to end: a new TPM identity key, TPM2_Certify of it
 * by the AK, CSR, real HTTPS to an in-process issuer, verified answer. They are interleaved (A, B,
 * A, B, …) so that drift on a shared machine hits both alike; "added" is the median of the paired
 * differences (A_i − B_i). CPU per renewal (process.cpuUsage: agent and issuer, one process; the
 * swtpm's own CPU is not in it) is printed too: on a shared machine CPU time is the steadier figure.
 *
 *   npm run bench -- tpm-renew [--pairs 30]
 *
 * Target: added time ≤ 1.5 × the raw TPM time of the added commands.
 * Needs swtpm, swtpm_setup, swtpm_localca (scripts/setup.sh).
 * Last stdout line: {"bench":"tpm-renew","pairs":…,"with_p50_ms":…,"without_p50_ms":…,"added_p50_ms":…,
 *   "added_raw_tpm_p50_ms":…,"quote_pcrread_raw_p50_ms":…,"ratio":…,"within_1_5x":…,
 *   "added_agent_side_p50_ms":…,"added_issuer_p50_ms":…,"agent_side_ratio":…,"agent_side_within_1_5x":…,
 *   "with_cpu_p50_ms":…,"without_cpu_p50_ms":…,"added_cpu_p50_ms":…,"tpm_commands_added":…,
 *   "tpm_connects_added":…,"tpm_connect_p50_ms":…,"fresh_evidence_call_p50_ms":…,"breakdown_ms":{…}}
 *
 * The issuer runs in this process: its share of the added time (the quote's checks, from a
 * request's first byte to its reply) is printed apart, and the agent's share is the added time
 * without it — as bench/tpm-join.ts judges its target.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildRenewRequest } from '../src/agent/requests.js';
import { renewalBinding } from '../src/attest/binding.js';
import { runJoinExchange } from '../src/join/exchange.js';
import type { AgentSettings } from '../src/join/registry.js';
import { TpmJoinAgent } from '../src/join/tpm/agent.js';
import { certifyWithAk, saveAk } from '../src/join/tpm/ak-store.js';
import { acceptAttestation, freshTpmEvidence, saveJoinAttestation } from '../src/join/tpm/fresh-evidence.js';
import { TpmSigner } from '../src/keystore/tpm.js';
import { TpmAccess } from '../src/keystore/tpm-access.js';
import { requestHash } from '../src/protocol/verify-response.js';
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
  0x158: 'Quote',
  0x17e: 'PCR_Read',
  0x165: 'FlushContext',
  0x148: 'Certify',
  0x153: 'Create',
  0x15d: 'Sign',
};

// --- the TPM round trips: the socket transport's send(), wrapped, attributed while `inQuote` ---
const meter = {
  inQuote: false,
  quoteMs: 0,
  quoteCmds: 0,
  quotePcrMs: 0,
  issuerMs: 0,
  evidenceMs: 0,
  connects: 0,
  connectMs: 0,
  byCc: new Map<string, number>(),
};
const rawSend = SocketTransport.prototype.send;
SocketTransport.prototype.send = async function (this: SocketTransport, cmd: Uint8Array): Promise<Uint8Array> {
  const t0 = performance.now();
  try {
    return await rawSend.call(this, cmd);
  } finally {
    if (meter.inQuote) {
      const ms = performance.now() - t0;
      const cc = Buffer.from(cmd).readUInt32BE(6);
      const name = CC[cc] ?? `0x${cc.toString(16)}`;
      meter.quoteMs += ms;
      meter.quoteCmds++;
      if (name === 'Quote' || name === 'PCR_Read') meter.quotePcrMs += ms;
      meter.byCc.set(name, (meter.byCc.get(name) ?? 0) + ms);
    }
  }
};

const rawConnect = SocketTransport.connect.bind(SocketTransport);
SocketTransport.connect = async (...a: Parameters<typeof rawConnect>): Promise<SocketTransport> => {
  const t0 = performance.now();
  try {
    return await rawConnect(...a);
  } finally {
    if (meter.inQuote) {
      meter.connects++;
      meter.connectMs += performance.now() - t0;
    }
  }
};

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const r2 = (x: number): number => Math.round(x * 100) / 100;
const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;

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
    meter,
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
  saveJoinAttestation(agentSettings, method.joinAttestation(joined.requestId));
  if (!settings.get('tpm.attestation')) throw new Error('the join left no attestation state: is the rule profiled?');
  let current = { signer: identity!, chain: joined.payload.result.chain };

  interface Sample {
    ms: number;
    cpu: number;
    issuerMs: number;
    /** The freshEvidence call alone (its TPM round trips and the client's work around them). */
    evidenceMs: number;
    /** TPM connections opened inside the freshEvidence call (swtpm: a TCP connect each). */
    connects: number;
    connectMs: number;
    rawMs: number;
    qpMs: number;
    cmds: number;
  }
  /** One renewal end to end; with `quote`, carrying fresh evidence. */
  async function renew(quote: boolean): Promise<Sample> {
    Object.assign(meter, {
      quoteMs: 0,
      quoteCmds: 0,
      quotePcrMs: 0,
      issuerMs: 0,
      evidenceMs: 0,
      connects: 0,
      connectMs: 0,
    });
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let newSigner: TpmSigner | undefined;
    const built = await buildRenewRequest({
      current: current.signer,
      chainPem: current.chain,
      now: Date.now(),
      newKey: async () => {
        newSigner = await TpmSigner.create(access);
        return { signer: newSigner, ref: newSigner.ref };
      },
      attest: (key, requestId) => certifyWithAk(agentSettings, key as TpmSigner, requestId),
      ...(quote
        ? {
            evidence: async (requestId: string, spki: Buffer) => {
              meter.inQuote = true;
              const e0 = performance.now();
              try {
                return await freshTpmEvidence(method, agentSettings, renewalBinding(requestId, spki));
              } finally {
                meter.evidenceMs += performance.now() - e0;
                meter.inQuote = false;
              }
            },
          }
        : {}),
    });
    const body = await client.post('renew', built.envelope);
    const r = verifier.responseOrError(body, 'renew', built.entry.requestId, requestHash(built.envelope), root).result;
    if (quote) acceptAttestation(agentSettings);
    current = { signer: newSigner!, chain: r.chain };
    const ms = performance.now() - t0;
    return {
      ms,
      cpu: cpuMs(process.cpuUsage(cpu0)),
      issuerMs: meter.issuerMs,
      evidenceMs: meter.evidenceMs,
      connectMs: meter.connectMs,
      connects: meter.connects,
      rawMs: meter.quoteMs,
      qpMs: meter.quotePcrMs,
      cmds: meter.quoteCmds,
    };
  }

  const A: Sample[] = [];
  const B: Sample[] = [];
  for (let i = 0; i < WARMUP + PAIRS; i++) {
    // Alternate which goes first, so neither always follows the other.
    const [a, b] =
      i % 2 === 0
        ? [await renew(true), await renew(false)]
        : (([y, x]) => [x, y])([await renew(false), await renew(true)]);
    if (i < WARMUP) continue;
    A.push(a!);
    B.push(b!);
  }
  meter.byCc.clear();
  for (let i = 0; i < 5; i++) {
    meter.inQuote = true;
    await freshTpmEvidence(method, agentSettings, renewalBinding(`probe-${i}-aaaaaaaaaaaa`, Buffer.alloc(32)));
    meter.inQuote = false;
  }
  const breakdown = Object.fromEntries([...meter.byCc].map(([k, v]) => [k, r2(v / 5)]));

  const withP50 = pct(
    A.map((x) => x.ms),
    50,
  );
  const withoutP50 = pct(
    B.map((x) => x.ms),
    50,
  );
  const added = pct(
    A.map((a, i) => a.ms - B[i]!.ms),
    50,
  );
  const rawP50 = pct(
    A.map((a) => a.rawMs),
    50,
  );
  const qpP50 = pct(
    A.map((a) => a.qpMs),
    50,
  );
  const addedCpu = pct(
    A.map((a, i) => a.cpu - B[i]!.cpu),
    50,
  );
  // The agent's share of the added time: the paired difference without the issuer's handling.
  const addedAgent = pct(
    A.map((a, i) => a.ms - a.issuerMs - (B[i]!.ms - B[i]!.issuerMs)),
    50,
  );
  const addedIssuer = pct(
    A.map((a, i) => a.issuerMs - B[i]!.issuerMs),
    50,
  );
  const ratio = added / rawP50;
  const agentRatio = addedAgent / rawP50;
  process.stdout.write(
    [
      `tpm-renew on swtpm, ${PAIRS} interleaved pairs (after ${WARMUP} warm-up pairs); a shared machine: read CPU before wall time`,
      `  renewal with quote      p50 ${r2(withP50)} ms   cpu p50 ${r2(
        pct(
          A.map((a) => a.cpu),
          50,
        ),
      )} ms`,
      `  renewal without quote   p50 ${r2(withoutP50)} ms   cpu p50 ${r2(
        pct(
          B.map((b) => b.cpu),
          50,
        ),
      )} ms`,
      `  added (paired p50)      ${r2(added)} ms wall, ${r2(addedCpu)} ms cpu (agent + issuer: quote check, PCR digest, profile)`,
      `  raw TPM of the added commands (${A[0]!.cmds} per renewal) p50 ${r2(rawP50)} ms; Quote + PCR_Read alone ${r2(qpP50)} ms`,
      `  per command (mean of 5): ${JSON.stringify(breakdown)}`,
      `  of the added time: agent side ${r2(addedAgent)} ms, issuer's handling ${r2(addedIssuer)} ms (quote signature, binding, PCR digest, profile)`,
      `  the freshEvidence call p50 ${r2(
        pct(
          A.map((a) => a.evidenceMs),
          50,
        ),
      )} ms: its TPM round trips plus the client's work around them (state, encoding)`,
      `  TPM connections opened by it: ${A[0]!.connects} per renewal, p50 ${r2(
        pct(
          A.map((a) => a.connectMs),
          50,
        ),
      )} ms`,
      `  added / raw TPM = ${r2(ratio)} end to end; agent side / raw TPM = ${r2(agentRatio)} (target <= 1.5)`,
      '',
    ].join('\n'),
  );
  process.stdout.write(
    JSON.stringify({
      bench: 'tpm-renew',
      pairs: PAIRS,
      with_p50_ms: r2(withP50),
      without_p50_ms: r2(withoutP50),
      added_p50_ms: r2(added),
      added_raw_tpm_p50_ms: r2(rawP50),
      quote_pcrread_raw_p50_ms: r2(qpP50),
      ratio: r2(ratio),
      added_agent_side_p50_ms: r2(addedAgent),
      added_issuer_p50_ms: r2(addedIssuer),
      agent_side_ratio: r2(agentRatio),
      within_1_5x: ratio <= 1.5,
      agent_side_within_1_5x: agentRatio <= 1.5,
      with_cpu_p50_ms: r2(
        pct(
          A.map((a) => a.cpu),
          50,
        ),
      ),
      without_cpu_p50_ms: r2(
        pct(
          B.map((b) => b.cpu),
          50,
        ),
      ),
      added_cpu_p50_ms: r2(addedCpu),
      tpm_commands_added: A[0]!.cmds,
      tpm_connects_added: A[0]!.connects,
      tpm_connect_p50_ms: r2(
        pct(
          A.map((a) => a.connectMs),
          50,
        ),
      ),
      fresh_evidence_call_p50_ms: r2(
        pct(
          A.map((a) => a.evidenceMs),
          50,
        ),
      ),
      breakdown_ms: breakdown,
    }) + '\n',
  );
  await close();
} finally {
  await tpm.destroy();
  ca.destroy();
  rmSync(work, { recursive: true, force: true });
}
