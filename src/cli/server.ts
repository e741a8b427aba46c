import type { Command } from 'commander';
import { SigilError } from '../errors.js';
import { initDataDir, loadCaMaterial, openIssuerStores } from '../server/data-dir.js';
import { createIssuerContext } from '../server/issuer.js';
import { buildHttpsServer } from '../transport/https/server.js';
import { createLogger } from '../util/log.js';
import { parseFormat, printJson } from './output.js';

/** Idempotency records outlive the longest certificate (24 h) so any retry finds its answer. */
const IDEMPOTENCY_KEEP_MS = 48 * 3600_000;

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new SigilError('config_invalid', `--listen must be HOST:PORT (e.g. 127.0.0.1:8443), got "${s}"`);
  return { host: (m[1] ?? m[2])!, port };
}

export function registerServer(program: Command, run: (fn: () => Promise<void> | void) => Promise<void>): void {
  const server = program.command('server').description('run and administer the issuer');

  server
    .command('init')
    .description('create the CA (root + issuing intermediate), the admin credential and the store')
    .requiredOption('--data-dir <dir>', 'issuer data directory')
    .requiredOption('--trust-domain <name>', 'SPIFFE trust domain, e.g. example.org')
    .option('--format <fmt>', 'table or json')
    .action((o: { dataDir: string; trustDomain: string; format?: string }) =>
      run(() => {
        const fmt = parseFormat(o.format);
        const r = initDataDir(o.dataDir, o.trustDomain);
        if (fmt === 'json') printJson({ ca_pin: r.pin, trust_domain: r.trustDomain, data_dir: o.dataDir, admin_token_file: r.adminTokenPath });
        else {
          process.stdout.write(`initialised issuer for trust domain ${r.trustDomain} in ${o.dataDir}\n`);
          process.stdout.write(`admin credential: ${r.adminTokenPath} (0600)\n`);
          process.stdout.write(`CA pin (give this to agents as ca_pin):\n${r.pin}\n`);
        }
      }),
    );

  server
    .command('start')
    .description('serve the issuer API over HTTPS')
    .requiredOption('--data-dir <dir>', 'issuer data directory')
    .option('--listen <host:port>', 'address to listen on (port 0 picks a free port)', '127.0.0.1:8443')
    .option('--tls-san <name...>', 'extra DNS names / IPs for the issuer TLS certificate')
    .option('--log-level <level>', 'trace|debug|info|warn|error', undefined)
    .action((o: { dataDir: string; listen: string; tlsSan?: string[]; logLevel?: string }) =>
      run(async () => {
        const { host, port } = parseListen(o.listen);
        const log = createLogger({ name: 'sigil-server', ...(o.logLevel ? { level: o.logLevel } : {}) });
        const ca = loadCaMaterial(o.dataDir);
        const stores = openIssuerStores(o.dataDir);
        const ctx = createIssuerContext({ ca, stores, log, tlsSans: [host, ...(o.tlsSan ?? [])] });
        const app = buildHttpsServer({ ctx });
        try {
          await app.listen({ host, port });
        } catch (e) {
          stores.close();
          throw new SigilError('config_invalid', `cannot listen on ${o.listen}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
        const addr = app.server.address();
        const actual = typeof addr === 'object' && addr ? addr.port : port;
        const url = `https://${host.includes(':') ? `[${host}]` : host}:${actual}`;
        log.info({ url, trust_domain: ca.trustDomain, ca_pin: ca.pin }, 'issuer ready');
        process.stdout.write(`sigil issuer listening on ${url} (trust domain ${ca.trustDomain}, ca pin ${ca.pin})\n`);
        const prune = setInterval(() => {
          try {
            const before = Date.now() - IDEMPOTENCY_KEEP_MS;
            stores.idempotency.prune(before);
            stores.tokens.prune(before);
          } catch (e) {
            log.warn({ err: e }, 'pruning failed');
          }
        }, 3600_000);
        prune.unref();
        await new Promise<void>((resolve) => {
          const stop = (sig: string): void => {
            log.info({ signal: sig }, 'shutting down');
            clearInterval(prune);
            app.close().finally(() => {
              stores.close();
              resolve();
            });
          };
          process.once('SIGTERM', () => stop('SIGTERM'));
          process.once('SIGINT', () => stop('SIGINT'));
        });
      }),
    );
}
