/**
 * The issuer the TPM benches join and renew against: in process, on real HTTPS, with one tpm
 * join rule for the swtpm's EK CA and the lab-gateway-v1 firmware profile. It adds its own time
 * per request (first byte to reply: body parse, checks, signing, SQLite) to `meter.issuerMs`, so a
 * bench can subtract the issuer's share from an end-to-end figure and keep the agent's.
 */
import type { AddressInfo } from 'node:net';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores } from '../../src/server/data-dir.js';
import { createIssuerContext } from '../../src/server/issuer.js';
import { ResponseVerifier } from '../../src/protocol/verify-response.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { buildHttpsServer } from '../../src/transport/https/server.js';
import { silentLogger } from '../../src/util/log.js';

export interface TpmBenchIssuer {
  stores: ReturnType<typeof openIssuerStores>;
  client: HttpsIssuerClient;
  /** One agent's verifier: it keeps the issuer chain it verified, as the agent's IssuerLink does. */
  verifier: ResponseVerifier;
  /** The issuer's root, fetched and pinned once. */
  root: string;
  close(): Promise<void>;
}

export async function startTpmBenchIssuer(opts: {
  dataDir: string;
  /** The swtpm's EK CA files (root, intermediate). */
  ekCaFiles: readonly string[];
  /** Extra lines of the rule's `tpm:` block, e.g. `max_attestation_age: 1h`. */
  ruleExtra?: string;
  /** Wall and CPU time (process.cpuUsage) of the issuer's request handling, added up. */
  meter: { issuerMs: number; issuerCpuMs?: number };
}): Promise<TpmBenchIssuer> {
  const init = initDataDir(opts.dataDir, 'bench.example');
  const stores = openIssuerStores(opts.dataDir);
  const ctx = createIssuerContext({ ca: loadCaMaterial(opts.dataDir), stores, log: silentLogger() });
  const extra = opts.ruleExtra ? `    ${opts.ruleExtra}\n` : '';
  await runAdminOp(stores, 'apply', {
    yaml: `kind: role\nname: edge\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: gw\nspec: { roles: [edge] }\n---\nkind: join_rule\nname: racks\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${opts.ekCaFiles.join(', ')}]\n    firmware_profiles: [lab-gateway-v1]\n${extra}`,
  });
  const app = buildHttpsServer({ ctx });
  // CPU between a request's first byte and its reply is the issuer's: the in-process agent is
  // waiting for that reply meanwhile (one request at a time in the benches).
  const started = new WeakMap<object, { t0: number; cpu0: NodeJS.CpuUsage }>();
  app.addHook('onRequest', async (req) => void started.set(req, { t0: performance.now(), cpu0: process.cpuUsage() }));
  app.addHook('onSend', async (req) => {
    const s = started.get(req);
    if (s === undefined) return;
    opts.meter.issuerMs += performance.now() - s.t0;
    const cpu = process.cpuUsage(s.cpu0);
    if (opts.meter.issuerCpuMs !== undefined) opts.meter.issuerCpuMs += (cpu.user + cpu.system) / 1000;
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const client = new HttpsIssuerClient({
    url: `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    pin: init.pin,
  });
  const root = await client.ensureRoot();
  return {
    stores,
    client,
    verifier: new ResponseVerifier(),
    root,
    close: async () => {
      client.close();
      await app.close();
      await stores.close();
    },
  };
}
