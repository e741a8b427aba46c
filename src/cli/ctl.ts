/**
 * `sigil ctl`: administer policy, tokens, instances, locks and the audit log. Local mode
 * (`--data-dir D`) opens the issuer's store directly — SQLite WAL lets it run beside a live
 * issuer. Remote mode (`--server URL`) goes through the admin API with the admin credential.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { SigilError } from '../errors.js';
import { expectedIssuerId, spkiPin } from '../pki/chain.js';
import { runAdminCall } from '../server/admin/audited.js';
import type { AdminAuditEnv } from '../server/admin/ops.js';
import type { AuditVerifyReport } from '../server/audit/verify.js';
import { openIssuerStores, paths, readAdminToken } from '../server/data-dir.js';
import { HttpsIssuerClient } from '../transport/https/client.js';
import { parseDuration } from '../util/duration.js';
import type { AttestationView } from '../server/admin/attestation-view.js';
import { attestationLines } from './attestation-text.js';
import { parseFormat, printJson, printTable } from './output.js';

interface CtlGlobals {
  dataDir?: string;
  server?: string;
  adminTokenFile?: string;
  caPin?: string;
}

async function admin(
  g: CtlGlobals,
  op: string,
  args: Record<string, unknown>,
  audit: LocalAuditOptions = {},
): Promise<unknown> {
  if (g.server) {
    const token = g.adminTokenFile
      ? readFileSync(g.adminTokenFile, 'utf8').trim()
      : g.dataDir
        ? readAdminToken(g.dataDir)
        : '';
    if (!token)
      throw new SigilError('unauthorized', 'remote mode needs --admin-token-file (or --data-dir holding admin.token)');
    let pin = g.caPin;
    if (!pin && g.dataDir) pin = spkiPin(readFileSync(paths(g.dataDir).rootCert));
    if (!pin) throw new SigilError('config_invalid', 'remote mode needs --ca-pin sha256:… (or --data-dir)');
    const client = new HttpsIssuerClient({ url: g.server, pin });
    try {
      return await client.admin(op, args, token);
    } finally {
      client.close();
    }
  }
  if (!g.dataDir) throw new SigilError('config_invalid', 'give --data-dir DIR (local) or --server URL (remote)');
  const stores = openIssuerStores(g.dataDir);
  try {
    // Awaited here: the operation's store calls finish before the store closes.
    return await runAdminCall(
      stores,
      op,
      args,
      Date.now(),
      { remote: 'local', auditReads: false },
      await localAuditEnv(g.dataDir, op, audit),
    );
  } finally {
    await stores.close();
  }
}

interface LocalAuditOptions {
  checkpointFile?: string;
}

/**
 * Checkpoint material for the audit operations in local mode: verifiers from the data
 * directory's intermediate certificate, the checkpoint file (--checkpoint, else the data
 * directory's own when it exists) and, for a prune only, the signing key.
 */
async function localAuditEnv(dataDir: string, op: string, o: LocalAuditOptions): Promise<AdminAuditEnv> {
  if (op !== 'audit.verify' && op !== 'audit.prune') return {};
  const { loadCheckpointSigner, loadCheckpointVerifiers } = await import('../server/audit/signer.js');
  const { CheckpointWriter } = await import('../server/audit/checkpoints.js');
  const own = paths(dataDir).auditCheckpoints;
  const checkpointFile = o.checkpointFile ?? (existsSync(own) ? own : undefined);
  const env: AdminAuditEnv = {
    verify: { verifiers: loadCheckpointVerifiers(dataDir), ...(checkpointFile ? { checkpointFile } : {}) },
  };
  if (op === 'audit.prune')
    env.checkpoints = new CheckpointWriter(o.checkpointFile ?? own, loadCheckpointSigner(dataDir));
  return env;
}

/**
 * The issuer's trust domain, from its pinned root: the data directory's (local), or the root the
 * issuer presents, checked against --ca-pin (remote; only when the policy has a workload, to
 * spare the handshake). `apply` refuses a workload SPIFFE ID outside it (policy/workload.ts).
 */
async function trustDomainFor(g: CtlGlobals, yaml: string): Promise<string | undefined> {
  let rootPem: string | undefined;
  if (g.dataDir && existsSync(paths(g.dataDir).rootCert)) rootPem = readFileSync(paths(g.dataDir).rootCert, 'utf8');
  else if (g.server && g.caPin && /\bworkload\b/.test(yaml)) {
    const client = new HttpsIssuerClient({ url: g.server, pin: g.caPin });
    try {
      rootPem = await client.ensureRoot();
    } finally {
      client.close();
    }
  }
  if (!rootPem) return undefined;
  return expectedIssuerId(rootPem).slice('spiffe://'.length).split('/')[0];
}

/** `--since` accepts a duration back from now (`1h`) or an ISO timestamp. */
function parseSince(s: string): number {
  if (/^\d{4}-\d{2}-\d{2}/.test(s)) {
    const t = Date.parse(s);
    if (Number.isNaN(t)) throw new SigilError('bad_request', `--since: "${s}" is not a valid timestamp`);
    return t;
  }
  return Date.now() - parseDuration(s, 'config_invalid') * 1000;
}

export function registerCtl(program: Command, run: (fn: () => Promise<void> | void) => Promise<void>): void {
  const ctl = program
    .command('ctl')
    .description('administer the issuer: policy, tokens, instances, locks, audit')
    .option('--data-dir <dir>', 'issuer data directory (local mode)')
    .option('--server <url>', 'issuer URL (remote mode, through the admin API)')
    .option('--admin-token-file <file>', 'admin credential for remote mode (default: DATA_DIR/admin.token)')
    .option('--ca-pin <pin>', 'issuer CA pin for remote mode (default: from DATA_DIR)');
  const g = (): CtlGlobals => ctl.opts<CtlGlobals>();

  ctl
    .command('apply')
    .description('create or update roles, bots, join rules and workloads from a YAML file (all or nothing)')
    .requiredOption('-f, --file <file>', 'YAML file with one or more documents')
    .option('--format <fmt>', 'table or json')
    .action((o: { file: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        let yaml: string;
        try {
          yaml = readFileSync(o.file, 'utf8');
        } catch (e) {
          throw new SigilError('bad_request', `cannot read ${o.file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
        }
        const trustDomain = await trustDomainFor(g(), yaml);
        const r = (await admin(g(), 'apply', {
          yaml,
          source: o.file,
          ...(trustDomain ? { trust_domain: trustDomain } : {}),
        })) as { applied: Array<Record<string, unknown>> };
        if (fmt === 'json') printJson(r);
        else for (const a of r.applied) process.stdout.write(`${a.kind}/${a.name} ${a.result}\n`);
        if (!g().server) await warnUnreadableRuleFiles(yaml, o.file, trustDomain);
      }),
    );

  const token = ctl.command('token').description('one-time join tokens');
  token
    .command('create')
    .description('create a single-use join token for a bot')
    .requiredOption('--bot <name>', 'bot the joining machine becomes')
    .option('--ttl <duration>', 'token lifetime (default 15m, max 24h)')
    .option('--format <fmt>', 'table or json')
    .action((o: { bot: string; ttl?: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        const r = (await admin(g(), 'token.create', { bot: o.bot, ...(o.ttl ? { ttl: o.ttl } : {}) })) as {
          token: string;
          expires: string;
          bot: string;
        };
        if (fmt === 'json') return printJson({ token: r.token, expires: r.expires, bot: r.bot });
        process.stdout.write(`token:   ${r.token}\nbot:     ${r.bot}\nexpires: ${r.expires} (single use)\n\n`);
        // Where it goes: a token file only the agent reads (a 0644 file, or agent.yaml holding it
        // inline, lets any local user join as the bot first; `sigil doctor` flags both), and the
        // one-shot run needs the daemon stopped (one agent per data dir: data_dir_locked).
        process.stdout.write(
          `On the machine, write it to the file named by agent.yaml's join.token_file, readable by the agent only:\n` +
            `  (umask 077; echo ${r.token} > /etc/sigil/token)\n` +
            `or put it in agent.yaml (keep that file 0600) as join: { method: token, token: ${r.token} }\n` +
            `then, with no agent daemon running on that data directory: sigil agent run --config agent.yaml --once\n`,
        );
      }),
    );

  ctl
    .command('bots')
    .description('bots')
    .command('ls')
    .option('--format <fmt>', 'table or json')
    .action((o: { format?: string }) =>
      run(async () => {
        const rows = (await admin(g(), 'bots.ls', {})) as Array<Record<string, unknown>>;
        if (parseFormat(o.format) === 'json') printJson(rows);
        else printTable(rows, ['name', 'roles', 'locked', 'instances']);
      }),
    );

  const instances = ctl.command('instances').description('joined machines');
  instances
    .command('ls')
    .option('--bot <name>', 'only this bot')
    .option('--format <fmt>', 'table or json')
    .action((o: { bot?: string; format?: string }) =>
      run(async () => {
        const rows = (await admin(g(), 'instances.ls', o.bot ? { bot: o.bot } : {})) as Array<Record<string, unknown>>;
        if (parseFormat(o.format) === 'json') printJson(rows);
        else
          printTable(rows, ['id', 'bot', 'join_method', 'generation', 'serial', 'not_after', 'key_storage', 'locked']);
      }),
    );

  instances
    .command('show <instance>')
    .description(
      'one instance, its last boot-state attestation and every certificate issued to it (identities, credentials, workload SVIDs)',
    )
    .option('--format <fmt>', 'table or json')
    .action((instance: string, o: { format?: string }) =>
      run(async () => {
        const r = (await admin(g(), 'instances.show', { instance })) as Record<string, unknown> & {
          certificates: Array<Record<string, unknown>>;
          attestation?: AttestationView | null;
        };
        if (parseFormat(o.format) === 'json') return printJson(r);
        const locked = r.locked && r.lock_reason ? `true (${String(r.lock_reason)})` : String(r.locked);
        process.stdout.write(
          `instance: ${String(r.id)}\nbot:      ${String(r.bot)}\nspiffe:   ${String(r.spiffe_id)}\nlocked:   ${locked}\n` +
            `${attestationLines(r.attestation).join('\n')}\n\n`,
        );
        // Workload SVIDs carry their SPIFFE ID (server/admin/workload-svid-view.ts); node certificates do not.
        const ids = r.certificates.some((c) => 'spiffe_id' in c) ? ['spiffe_id'] : [];
        printTable(r.certificates, ['serial', 'kind', 'generation', 'not_after', 'issued_at', ...ids]);
      }),
    );

  instances
    .command('tpm-clock-reset <instance>')
    .description(
      'accept a deliberately cleared TPM (TPM2_Clear restarts its clock) under its old instance: forget the recorded TPM clock',
    )
    .option('--reason <text>', 'recorded in the audit log')
    .option('--format <fmt>', 'table or json')
    .action((instance: string, o: { reason?: string; format?: string }) =>
      run(async () => {
        const r = (await admin(g(), 'instances.tpm-clock-reset', {
          instance,
          ...(o.reason ? { reason: o.reason } : {}),
        })) as Record<string, unknown>;
        if (parseFormat(o.format) === 'json') printJson(r);
        else
          process.stdout.write(
            `instance ${instance}: recorded TPM clock (${String(r.forgotten_clock_ms)} ms) forgotten; its next tpm join sets a new baseline\n`,
          );
      }),
    );

  for (const op of ['lock', 'unlock'] as const) {
    const c = ctl
      .command(`${op} <target>`)
      .description(
        op === 'lock' ? 'refuse every join and renewal of a bot or an instance' : 'lift a lock on a bot or an instance',
      )
      .option('--format <fmt>', 'table or json');
    if (op === 'lock') c.option('--reason <text>', 'recorded in the audit log');
    c.action((target: string, o: { reason?: string; format?: string }) =>
      run(async () => {
        const r = (await admin(g(), op, { target, ...(o.reason ? { reason: o.reason } : {}) })) as Record<
          string,
          unknown
        >;
        if (parseFormat(o.format) === 'json') printJson(r);
        else process.stdout.write(`${r.bot ? `bot ${String(r.bot)}` : `instance ${String(r.instance)}`} ${op}ed\n`);
      }),
    );
  }

  const devices = ctl
    .command('devices')
    .description('devices pre-registered from factory manifests (join rules with registered_only)');
  devices
    .command('import <manifest>')
    .description('register the devices of a JSON Lines manifest (all or nothing; re-importing is a no-op)')
    .option('--rule <name>', 'limit the registrations to this x509 join rule')
    .option('--format <fmt>', 'table or json')
    .action((manifest: string, o: { rule?: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        let jsonl: string;
        try {
          jsonl = readFileSync(manifest, 'utf8');
        } catch (e) {
          throw new SigilError(
            'bad_request',
            `cannot read ${manifest}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
          );
        }
        const r = (await admin(g(), 'devices.import', {
          jsonl,
          source: manifest,
          ...(o.rule ? { rule: o.rule } : {}),
        })) as { lines: number; created: number; updated: number; unchanged: number; rule: string | null };
        if (fmt === 'json') printJson(r);
        else
          process.stdout.write(
            `${r.lines} devices in ${manifest}: ${r.created} imported, ${r.updated} updated, ${r.unchanged} unchanged${r.rule ? ` (rule ${r.rule})` : ''}\n`,
          );
      }),
    );
  devices
    .command('ls')
    .option('--rule <name>', 'only this join rule')
    .option('--format <fmt>', 'table or json')
    .action((o: { rule?: string; format?: string }) =>
      run(async () => {
        const rows = (await admin(g(), 'devices.ls', o.rule ? { rule: o.rule } : {})) as Array<Record<string, unknown>>;
        if (parseFormat(o.format) === 'json') printJson(rows);
        else printTable(rows, ['serial', 'rule', 'idevid_fingerprint', 'imported_at']);
      }),
    );

  const bindings = ctl
    .command('bindings')
    .description('first-join key bindings (aws_iid: which binding key an instance joined with)');
  bindings
    .command('ls')
    .option('--method <name>', 'only this join method (aws_iid)')
    .option('--format <fmt>', 'table or json')
    .action((o: { method?: string; format?: string }) =>
      run(async () => {
        const rows = (await admin(g(), 'bindings.ls', o.method ? { method: o.method } : {})) as Array<
          Record<string, unknown>
        >;
        if (parseFormat(o.format) === 'json') printJson(rows);
        else printTable(rows, ['method', 'subject', 'key_hash', 'rule', 'bound_at']);
      }),
    );
  bindings
    .command('reset <method> <subject>')
    .description('forget a binding, so the next join of the subject (e.g. an EC2 instance id) binds its key afresh')
    .option('--reason <text>', 'recorded in the audit log')
    .option('--format <fmt>', 'table or json')
    .action((method: string, subject: string, o: { reason?: string; format?: string }) =>
      run(async () => {
        const r = (await admin(g(), 'bindings.reset', {
          method,
          subject,
          ...(o.reason ? { reason: o.reason } : {}),
        })) as Record<string, unknown>;
        if (parseFormat(o.format) === 'json') printJson(r);
        else process.stdout.write(`${method} binding of ${subject} reset; its next join binds a new key\n`);
      }),
    );

  const ca = ctl.command('ca').description('public CA material');
  ca.command('crl')
    .description(
      'the CRL of locked instances, signed by the intermediate (PEM; for mosquitto crlfile, nginx ssl_crl, PostgreSQL ssl_crl_file): signed now with --data-dir, fetched from GET /v1/crl with --server',
    )
    .option('--out <file>', 'write it to FILE (atomically) instead of stdout')
    .option('--der', 'DER instead of PEM')
    .option('--format <fmt>', 'json: print what the CRL lists (with --out, or instead of the CRL)')
    .action((o: { out?: string; der?: boolean; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        const { crlPem, fetchCrl, localCrl } = await import('../server/crl/ctl.js');
        const globals = g();
        let got;
        if (globals.server) {
          const pin = globals.caPin ?? (globals.dataDir ? spkiPin(readFileSync(paths(globals.dataDir).rootCert)) : '');
          if (!pin) throw new SigilError('config_invalid', 'remote mode needs --ca-pin sha256:… (or --data-dir)');
          got = await fetchCrl(globals.server, pin);
        } else if (globals.dataDir) got = await localCrl(globals.dataDir);
        else throw new SigilError('config_invalid', 'give --data-dir DIR (sign one now) or --server URL (fetch it)');
        const bytes = o.der ? got.der : crlPem(got.der);
        if (o.out) {
          const { writeFileAtomic } = await import('../util/atomic-file.js');
          writeFileAtomic(o.out, bytes, { mode: 0o644 });
        }
        if (fmt === 'json') printJson({ ...got.summary, ...(o.out ? { out: o.out } : {}) });
        else if (o.out)
          process.stdout.write(
            `CRL ${got.summary.crl_number} (${got.summary.revoked.length} revoked, next update ${got.summary.next_update}) written to ${o.out}\n`,
          );
        else process.stdout.write(bytes);
      }),
    );
  ca.command('export')
    .description(
      'print what consumers trust: ssh-user (TrustedUserCAKeys line), ssh-host (@cert-authority known_hosts line), x509 (root PEM), jwks (JWT-SVID keys)',
    )
    .requiredOption('--type <type>', 'ssh-user | ssh-host | x509 | jwks')
    .option('--hosts <patterns>', 'known_hosts host patterns for --type ssh-host (default *)')
    .option('--format <fmt>', 'table (the material as is) or json')
    .action((o: { type: string; hosts?: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        if (!g().dataDir)
          throw new SigilError('config_invalid', 'ca export reads the issuer data directory: give --data-dir DIR');
        const { exportCaMaterial } = await import('../server/ca-export.js');
        // The store's memory of withdrawn keys too (a ca/ older than a compromise rotation).
        const withdrawn =
          o.type === 'x509'
            ? []
            : await (async () => {
                const stores = openIssuerStores(g().dataDir!);
                try {
                  return await stores.admin.withdrawnKeys();
                } finally {
                  await stores.close();
                }
              })();
        const material = exportCaMaterial(g().dataDir!, o.type, {
          ...(o.hosts !== undefined ? { hosts: o.hosts } : {}),
          withdrawn,
        });
        if (fmt === 'json') printJson({ type: o.type, material });
        else process.stdout.write(material);
      }),
    );

  const audit = ctl
    .command('audit')
    .description('show, verify or prune the hash-chained audit log')
    .option('--since <when>', 'duration back from now (1h) or ISO timestamp')
    .option('--limit <n>', 'at most N rows')
    .option('--verify', 'verify the hash chain, its key, anchors and append-only triggers instead of listing')
    .option(
      '--checkpoint <file>',
      'with --verify (local mode): signed checkpoints to compare against (default DATA_DIR/audit-checkpoints.jsonl when it exists)',
    )
    .option('--format <fmt>', 'table or json')
    .action((o: { since?: string; limit?: string; verify?: boolean; checkpoint?: string; format?: string }) =>
      run(async () => {
        const fmt = parseFormat(o.format);
        if (o.verify) {
          if (o.checkpoint && g().server)
            throw new SigilError(
              'config_invalid',
              "--checkpoint compares a local file: use --data-dir (remote mode checks the issuer's own checkpoint file)",
            );
          const r = (await admin(
            g(),
            'audit.verify',
            {},
            o.checkpoint ? { checkpointFile: o.checkpoint } : {},
          )) as AuditVerifyReport;
          if (fmt === 'json') printJson(auditRowForDisplay(r as unknown as Record<string, unknown>));
          else process.stdout.write(describeVerify(r));
          if (!r.ok)
            throw new SigilError(
              'audit_chain_broken',
              r.brokenAt !== undefined
                ? `the audit hash chain does not verify at seq ${r.brokenAt} (${r.reason})`
                : `the audit log does not verify: ${r.reason}`,
            );
          return;
        }
        const limit = o.limit !== undefined ? Number(o.limit) : undefined;
        if (limit !== undefined && (!Number.isInteger(limit) || limit <= 0))
          throw new SigilError('bad_request', '--limit must be a positive whole number');
        const rows = (await admin(g(), 'audit', {
          ...(o.since ? { since: parseSince(o.since) } : {}),
          ...(limit ? { limit } : {}),
        })) as Array<Record<string, unknown>>;
        const shown = rows.map(auditRowForDisplay);
        if (fmt === 'json') printJson(shown);
        else printTable(shown, ['seq', 'at', 'action', 'outcome', 'code', 'bot', 'instance_id', 'method']);
      }),
    );

  audit
    .command('prune')
    .description(
      'remove audit rows older than a time: verifies the chain, appends a signed checkpoint of the last removed row, then deletes',
    )
    .requiredOption('--before <when>', 'duration back from now (90d) or ISO timestamp')
    .option('--checkpoint <file>', 'checkpoint file to append to (default DATA_DIR/audit-checkpoints.jsonl)')
    .option('--format <fmt>', 'table or json')
    .action((o: { before: string; checkpoint?: string; format?: string }) =>
      run(async () => {
        // `--format`/`--checkpoint` after `prune` may land on the parent `audit` command.
        const parent = audit.opts<{ format?: string; checkpoint?: string }>();
        const fmt = parseFormat(o.format ?? parent.format);
        o.checkpoint ??= parent.checkpoint;
        const r = (await admin(
          g(),
          'audit.prune',
          { before: parseSince(o.before) },
          o.checkpoint ? { checkpointFile: o.checkpoint } : {},
        )) as { through_seq: number | null; removed: number; before: string; checkpoint_file: string };
        if (fmt === 'json') return printJson(r);
        process.stdout.write(
          r.through_seq === null
            ? `no audit rows before ${r.before}\n`
            : `removed ${r.removed} audit rows through seq ${r.through_seq} (before ${r.before}); checkpoint appended to ${r.checkpoint_file}\n`,
        );
      }),
    );
}

/**
 * An audit row (or the verify report) as the CLI shows it: snake_case keys and an ISO 8601
 * `at`, like every other listing. Only the presentation: the stored row and the hash input
 * (store/sqlite/audit.ts, camelCase `instanceId`, epoch-ms `at`) stay as they are, so the
 * chain still verifies.
 */
export function auditRowForDisplay(r: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) {
    out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] =
      k === 'at' && typeof v === 'number' ? new Date(v).toISOString() : v;
  }
  return out;
}

function describeVerify(r: AuditVerifyReport): string {
  const lines: string[] = [];
  const facts = [
    ...(r.first_seq !== null ? [`seq ${r.first_seq}..${r.last_seq}`] : []),
    r.key ? `keyed from seq ${r.key.from_seq}` : 'not keyed (no audit.key)',
    ...(r.anchor ? [`pruned through seq ${r.anchor.seq}`] : []),
  ].join(', ');
  lines.push(
    r.ok
      ? `audit chain ok (${r.rows} rows): ${facts}`
      : r.brokenAt !== undefined
        ? `audit chain BROKEN at seq ${r.brokenAt}: ${r.reason}`
        : `audit log NOT OK (${r.rows} rows): ${facts}`,
  );
  if (r.checkpoints)
    lines.push(
      `checkpoints: ${r.checkpoints.file}: ${r.checkpoints.verified} of ${r.checkpoints.lines} verified, latest seq ${r.checkpoints.latest_seq ?? '-'}`,
    );
  for (const p of r.problems) lines.push(`  problem: ${p}`);
  return lines.join('\n') + '\n';
}

/**
 * Local mode runs where the issuer reads a join rule's files: say now which it cannot read, instead
 * of the first join failing `join_rule_unusable` (the rule is applied all the same — the file may
 * be put in place next). On stderr, so `--format json` stays one document.
 */
async function warnUnreadableRuleFiles(yaml: string, source: string, trustDomain?: string): Promise<void> {
  const [{ parseResources }, { ruleFiles, unreadableRuleFiles, describeUnreadable }] = await Promise.all([
    import('../server/policy/resources.js'),
    import('../server/policy/rule-files.js'),
  ]);
  const files = parseResources(yaml, source, trustDomain)
    .filter((d) => d.kind === 'join_rule')
    .flatMap((d) => ruleFiles(d.name, d.spec));
  for (const f of unreadableRuleFiles(files))
    process.stderr.write(
      `warning: ${describeUnreadable(f)}: the issuer cannot read it; joins under this rule fail join_rule_unusable until it can\n`,
    );
}
