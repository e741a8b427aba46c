/**
 * A large, varied fleet written straight into an issuer's store (issue #18): instances with their
 * current certificates (bots, join methods, key storage, TTLs, renewal overdue, expired, locked,
 * attestation passed and failed) and an audit chain for the activity charts. For the fleet
 * benches (bench/fleet-page.ts) and the fleet view's browser tests and server-time bench.
 *
 * Fast: direct SQL in one transaction on SQLite (prepared INSERTs), COPY on PostgreSQL; no
 * issuance, no joins. The schema is migrated first (the same migrations an issuer runs), so the
 * target may be a fresh file/database or an existing issuer's. The audit rows continue the
 * existing chain (its head, hashed with `auditKey` from its fromSeq on, as the issuer would), so
 * `ctl audit --verify` still passes. Deterministic for a given `seed` and `now`.
 *
 *   import { seedFleet } from './bench/lib/seed-fleet.js';
 *   await seedFleet({ sqlite: `${dataDir}/issuer.db` }, { instances: 100_000, now: Date.now() });
 *   await seedFleet({ postgres: 'postgres://…/sigil' }, { instances: 100_000 });
 */
import postgres from 'postgres';
import { openSqlite } from '../../src/server/store/sqlite/db.js';
import { auditRowHash, AUDIT_GENESIS_HASH, type AuditContent } from '../../src/server/store/sqlite/audit.js';
import { canonicalJson } from '../../src/server/store/sqlite/canonical-json.js';
import { openPostgresStores } from '../../src/server/store/postgres/index.js';
import { ISSUE_BACKDATE_MS } from '../../src/server/store/fleet-types.js';

export interface SeedFleetOptions {
  /** Instances to add (default 100,000). */
  instances?: number;
  /** The time the fleet's states are relative to (default Date.now()). */
  now?: number;
  /** Audit rows to add (default 4 per instance), spread over the `auditWindowMs` before `now`. */
  auditRows?: number;
  /** Default 2 hours: the density of a fleet renewing every 30 minutes, for the hour chart. */
  auditWindowMs?: number;
  /** Number of bots (default 20), named bot-00 …; instances spread over them unevenly. */
  bots?: number;
  trustDomain?: string;
  /** PRNG seed (default 1). */
  seed?: number;
  /** The issuer's audit key (audit.key), so the added rows chain as the issuer's own would. */
  auditKey?: { secret: Buffer; fromSeq: number };
  /** Instance ids are `${idPrefix}${26 base32 chars}` (default 'i-'). */
  idPrefix?: string;
}

export interface SeedFleetResult {
  instances: number;
  certificates: number;
  auditRows: number;
  seconds: number;
  /** The bots used, most populated first. */
  bots: string[];
  /** A few instance ids, one per state where there is one (healthy, locked, expired, overdue, attestation failed). */
  samples: Partial<Record<'healthy' | 'locked' | 'expired' | 'renewal_overdue' | 'attestation_failed', string>>;
}

export type SeedTarget = { sqlite: string } | { postgres: string };

/** One instance and its current certificate, as column values. */
interface SeedInstance {
  id: string;
  bot: string;
  join_method: string;
  spiffe_id: string;
  generation: number;
  locked: boolean;
  lock_reason: string | null;
  facts: string;
  key_storage: 'software' | 'tpm' | 'pkcs11';
  exportable: boolean;
  created_at: number;
  updated_at: number;
  last_seen_at: number;
  current_serial: string;
  current_not_before: number;
  current_not_after: number;
  attestation_ok: boolean | null;
  spki_hash: string;
  request_id: string;
}

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** mulberry32: small, fast, deterministic. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(rnd: () => number, weighted: ReadonlyArray<readonly [T, number]>): T {
  const total = weighted.reduce((s, [, w]) => s + w, 0);
  let x = rnd() * total;
  for (const [v, w] of weighted) {
    x -= w;
    if (x < 0) return v;
  }
  return weighted[weighted.length - 1]![0];
}

function token(rnd: () => number, n: number, alphabet = BASE32): string {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
  return s;
}

const HEX = '0123456789abcdef';
const METHODS = [
  ['tpm', 40],
  ['token', 30],
  ['aws_iid', 20],
  ['x509', 10],
] as const;
const PROFILES = ['fw-2024-06', 'fw-2024-11', 'fw-2025-03'];

function makeInstances(
  o: Required<Omit<SeedFleetOptions, 'auditKey'>>,
  rnd: () => number,
): {
  rows: SeedInstance[];
  bots: string[];
} {
  const bots = Array.from({ length: o.bots }, (_, i) => `bot-${String(i).padStart(2, '0')}`);
  // Uneven: bot i gets weight 1/(i+1) (a few big bots, a long tail).
  const botWeights = bots.map((b, i) => [b, 1 / (i + 1)] as const);
  const rows: SeedInstance[] = [];
  for (let i = 0; i < o.instances; i++) {
    const id = `${o.idPrefix}${token(rnd, 26)}`;
    const bot = pick(rnd, botWeights);
    const method = pick(rnd, METHODS);
    const keyStorage = method === 'tpm' ? 'tpm' : rnd() < 0.1 ? 'pkcs11' : 'software';
    const ttl = rnd() < 0.9 ? HOUR : DAY;
    const createdAt = o.now - Math.floor(rnd() * 90 * DAY) - HOUR;
    // Most renewed on time (age below 2/3 of the lifetime), some overdue, 2% expired (stopped renewing).
    let notBefore: number;
    if (rnd() < 0.02) notBefore = o.now - ttl - Math.floor(rnd() * 7 * DAY) - MIN;
    else notBefore = o.now - Math.floor(rnd() * 0.75 * ttl);
    notBefore = Math.max(notBefore, createdAt);
    const notAfter = notBefore + ttl;
    const generation = 1 + Math.floor((notBefore - createdAt) / (ttl / 2));
    const locked = rnd() < 0.01;
    const facts: Record<string, unknown> = {};
    let attestationOk: boolean | null = null;
    if (method === 'tpm') {
      const profile = PROFILES[Math.floor(rnd() * PROFILES.length)]!;
      attestationOk = rnd() >= 0.03;
      facts['ek_hash'] = `sha256:${token(rnd, 64, HEX)}`;
      facts['firmware_profile'] = profile;
      facts['attestation'] = {
        at: o.now - Math.floor(rnd() * HOUR),
        ok: attestationOk,
        via: 'attest',
        profile,
        ...(attestationOk ? {} : { code: 'pcr_mismatch', pcrs: [0, 7] }),
      };
    } else if (method === 'token') facts['token_hash_prefix'] = token(rnd, 8, HEX);
    else if (method === 'aws_iid')
      Object.assign(facts, { account: '123456789012', region: 'eu-west-1', instance_id: `i-0${token(rnd, 16, HEX)}` });
    else facts['idevid_fingerprint'] = `sha256:${token(rnd, 64, HEX)}`;
    const lastSeen = Math.min(o.now, notBefore + 30_000);
    rows.push({
      id,
      bot,
      join_method: method,
      spiffe_id: `spiffe://${o.trustDomain}/bot/${bot}/${id}`,
      generation,
      locked,
      lock_reason: locked ? 'seeded: device reported lost' : null,
      facts: canonicalJson(facts),
      key_storage: keyStorage,
      exportable: keyStorage === 'software',
      created_at: createdAt,
      updated_at: lastSeen,
      last_seen_at: lastSeen,
      current_serial: token(rnd, 32, HEX),
      current_not_before: notBefore,
      current_not_after: notAfter,
      attestation_ok: attestationOk,
      spki_hash: `sha256:${token(rnd, 64, HEX)}`,
      request_id: `seed-${token(rnd, 20)}`,
    });
  }
  // Sort bots by population (most first) for the caller.
  const pop = new Map<string, number>();
  for (const r of rows) pop.set(r.bot, (pop.get(r.bot) ?? 0) + 1);
  return { rows, bots: [...bots].sort((a, b) => (pop.get(b) ?? 0) - (pop.get(a) ?? 0)) };
}

const ATTESTATION_CODES = ['pcr_mismatch', 'quote_nonce_mismatch', 'eventlog_replay_mismatch'];
const OTHER_CODES = ['generation_mismatch', 'instance_locked', 'token_expired', 'bot_locked'];

/** The audit rows' hashed content, oldest first, continuing the chain after `head`. */
function* auditContents(
  o: Required<Omit<SeedFleetOptions, 'auditKey'>>,
  rnd: () => number,
  instances: SeedInstance[],
  headSeq: number,
): Generator<AuditContent> {
  const n = o.auditRows;
  const start = o.now - o.auditWindowMs;
  for (let k = 0; k < n; k++) {
    const inst = instances[Math.floor(rnd() * instances.length)]!;
    const at = start + Math.floor(((k + rnd()) * o.auditWindowMs) / n);
    const r = rnd();
    let action = 'renew';
    let outcome = 'ok';
    let code: string | null = null;
    let actor = 'agent';
    if (r < 0.03) {
      action = 'renew';
      outcome = 'refused';
      code = OTHER_CODES[Math.floor(rnd() * OTHER_CODES.length)]!;
    } else if (r < 0.05) {
      action = 'attest';
      outcome = rnd() < 0.3 ? 'refused' : 'ok';
      if (outcome === 'refused') code = ATTESTATION_CODES[Math.floor(rnd() * ATTESTATION_CODES.length)]!;
    } else if (r < 0.07) {
      action = 'join';
      outcome = rnd() < 0.2 ? 'refused' : 'ok';
      if (outcome === 'refused') code = ATTESTATION_CODES[0]!;
    } else if (r < 0.071) {
      action = rnd() < 0.5 ? 'lock' : 'unlock';
      actor = 'admin';
    }
    yield {
      seq: headSeq + k + 1,
      at,
      action,
      outcome,
      code,
      bot: inst.bot,
      instanceId: inst.id,
      method: inst.join_method,
      actor,
      remote: actor === 'agent' ? `10.${k % 250}.${(k >> 8) % 250}.${(k >> 16) % 250}` : '127.0.0.1',
      details: action === 'renew' && outcome === 'ok' ? { generation: inst.generation } : {},
    };
  }
}

/** fleet-types.ts's rule: past 2/3 of the lifetime from the issue (notBefore + the backdate). */
const overdue = (r: SeedInstance, now: number): boolean =>
  2 * r.current_not_after + r.current_not_before <= 3 * now - ISSUE_BACKDATE_MS;

function samplesOf(rows: SeedInstance[], now: number): SeedFleetResult['samples'] {
  const out: SeedFleetResult['samples'] = {};
  for (const r of rows) {
    if (r.locked) out.locked ??= r.id;
    else if (r.current_not_after <= now) out.expired ??= r.id;
    else if (overdue(r, now)) out.renewal_overdue ??= r.id;
    if (r.attestation_ok === false) out.attestation_failed ??= r.id;
    else if (!r.locked && r.current_not_after > now && !overdue(r, now)) out.healthy ??= r.id;
  }
  return out;
}

/** Add a seeded fleet to the store at `target` (migrating it first). */
export async function seedFleet(target: SeedTarget, opts: SeedFleetOptions = {}): Promise<SeedFleetResult> {
  const t0 = process.hrtime.bigint();
  const instances = opts.instances ?? 100_000;
  const o: Required<Omit<SeedFleetOptions, 'auditKey'>> = {
    instances,
    now: opts.now ?? Date.now(),
    auditRows: opts.auditRows ?? 4 * instances,
    auditWindowMs: opts.auditWindowMs ?? 2 * HOUR,
    bots: opts.bots ?? 20,
    trustDomain: opts.trustDomain ?? 'example.org',
    seed: opts.seed ?? 1,
    idPrefix: opts.idPrefix ?? 'i-',
  };
  const rnd = prng(o.seed);
  const { rows, bots } = makeInstances(o, rnd);
  const key = opts.auditKey;
  const hashFor = (seq: number) => (key && seq >= key.fromSeq ? key.secret : undefined);
  const auditCount =
    'sqlite' in target
      ? seedSqlite(target.sqlite, rows, o, rnd, hashFor)
      : await seedPostgres(target.postgres, rows, o, rnd, hashFor);
  return {
    instances: rows.length,
    certificates: rows.length,
    auditRows: auditCount,
    seconds: Number(process.hrtime.bigint() - t0) / 1e9,
    bots,
    samples: samplesOf(rows, o.now),
  };
}

type KeyFor = (seq: number) => Buffer | undefined;

function seedSqlite(
  path: string,
  rows: SeedInstance[],
  o: Required<Omit<SeedFleetOptions, 'auditKey'>>,
  rnd: () => number,
  keyFor: KeyFor,
): number {
  const db = openSqlite(path);
  try {
    const insInstance = db.prepare(
      `INSERT INTO instances (id, bot, join_method, spiffe_id, generation, locked, lock_reason, facts, key_storage,
         exportable, created_at, updated_at, last_seen_at, current_serial, current_not_after, current_not_before, attestation_ok)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const insCert = db.prepare(
      `INSERT INTO certificates (serial, instance_id, bot, generation, not_before, not_after, kind, key_storage,
         exportable, spki_hash, request_id, issued_at) VALUES (?, ?, ?, ?, ?, ?, 'x509-svid', ?, ?, ?, ?, ?)`,
    );
    const insAudit = db.prepare(
      `INSERT INTO audit_log (seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details, prev_hash, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const b = (v: boolean | null) => (v === null ? null : v ? 1 : 0);
    let audited = 0;
    db.transaction(() => {
      for (const r of rows) {
        insInstance.run(
          r.id,
          r.bot,
          r.join_method,
          r.spiffe_id,
          r.generation,
          b(r.locked),
          r.lock_reason,
          r.facts,
          r.key_storage,
          b(r.exportable),
          r.created_at,
          r.updated_at,
          r.last_seen_at,
          r.current_serial,
          r.current_not_after,
          r.current_not_before,
          b(r.attestation_ok),
        );
        insCert.run(
          r.current_serial,
          r.id,
          r.bot,
          r.generation,
          r.current_not_before,
          r.current_not_after,
          r.key_storage,
          b(r.exportable),
          r.spki_hash,
          r.request_id,
          r.current_not_before,
        );
      }
      const head = db
        .prepare<[], { seq: number; hash: string }>(
          `SELECT seq, hash FROM (SELECT * FROM (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1)
             UNION ALL SELECT * FROM (SELECT seq, hash FROM audit_anchor ORDER BY seq DESC LIMIT 1))
           ORDER BY seq DESC LIMIT 1`,
        )
        .get();
      let prev = head?.hash ?? AUDIT_GENESIS_HASH;
      for (const c of auditContents(o, rnd, rows, head?.seq ?? 0)) {
        const hash = auditRowHash(prev, c, keyFor(c.seq));
        insAudit.run(
          c.seq,
          c.at,
          c.action,
          c.outcome,
          c.code,
          c.bot,
          c.instanceId,
          c.method,
          c.actor,
          c.remote,
          canonicalJson(c.details),
          prev,
          hash,
        );
        prev = hash;
        audited++;
      }
    }).immediate();
    return audited;
  } finally {
    db.close();
  }
}

/** COPY text format: backslash, tab, newline and carriage return escaped; NULL as \N. */
function copyField(v: string | number | boolean | null): string {
  if (v === null) return '\\N';
  if (typeof v !== 'string') return String(v);
  return v.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}

async function copyRows(
  sql: postgres.TransactionSql,
  table: string,
  columns: string[],
  rows: Iterable<Array<string | number | boolean | null>>,
): Promise<void> {
  const stream = await sql.unsafe(`COPY ${table} (${columns.join(', ')}) FROM STDIN`).writable();
  const done = new Promise<void>((resolve, reject) => {
    stream.on('finish', resolve);
    stream.on('error', reject);
  });
  let chunk = '';
  for (const r of rows) {
    chunk += r.map(copyField).join('\t') + '\n';
    if (chunk.length > 1 << 20) {
      if (!stream.write(chunk)) await new Promise((res) => stream.once('drain', res));
      chunk = '';
    }
  }
  stream.end(chunk);
  await done;
}

async function seedPostgres(
  url: string,
  rows: SeedInstance[],
  o: Required<Omit<SeedFleetOptions, 'auditKey'>>,
  rnd: () => number,
  keyFor: KeyFor,
): Promise<number> {
  // Migrate the way an issuer does, then write on a connection of our own.
  const stores = openPostgresStores(url);
  await stores.ready;
  await stores.close();
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  let audited = 0;
  try {
    await sql.begin(async (tx) => {
      await copyRows(
        tx,
        'instances',
        [
          'id',
          'bot',
          'join_method',
          'spiffe_id',
          'generation',
          'locked',
          'lock_reason',
          'facts',
          'key_storage',
          'exportable',
          'created_at',
          'updated_at',
          'last_seen_at',
          'current_serial',
          'current_not_after',
          'current_not_before',
          'attestation_ok',
        ],
        rows.map((r) => [
          r.id,
          r.bot,
          r.join_method,
          r.spiffe_id,
          r.generation,
          r.locked,
          r.lock_reason,
          r.facts,
          r.key_storage,
          r.exportable,
          r.created_at,
          r.updated_at,
          r.last_seen_at,
          r.current_serial,
          r.current_not_after,
          r.current_not_before,
          r.attestation_ok,
        ]),
      );
      await copyRows(
        tx,
        'certificates',
        [
          'serial',
          'instance_id',
          'bot',
          'generation',
          'not_before',
          'not_after',
          'kind',
          'key_storage',
          'exportable',
          'spki_hash',
          'request_id',
          'issued_at',
        ],
        rows.map((r) => [
          r.current_serial,
          r.id,
          r.bot,
          r.generation,
          r.current_not_before,
          r.current_not_after,
          'x509-svid',
          r.key_storage,
          r.exportable,
          r.spki_hash,
          r.request_id,
          r.current_not_before,
        ]),
      );
      const [head] = await tx<{ seq: number; hash: string }[]>`
        SELECT seq::int8 AS seq, hash FROM (
          (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1)
          UNION ALL (SELECT seq, hash FROM audit_anchor ORDER BY seq DESC LIMIT 1)) h
        ORDER BY seq DESC LIMIT 1`;
      let prev = head?.hash ?? AUDIT_GENESIS_HASH;
      const headSeq = head ? Number(head.seq) : 0;
      function* auditRows(): Generator<Array<string | number | null>> {
        for (const c of auditContents(o, rnd, rows, headSeq)) {
          const hash = auditRowHash(prev, c, keyFor(c.seq));
          yield [
            c.seq,
            c.at,
            c.action,
            c.outcome,
            c.code,
            c.bot,
            c.instanceId,
            c.method,
            c.actor,
            c.remote,
            canonicalJson(c.details),
            prev,
            hash,
          ];
          prev = hash;
          audited++;
        }
      }
      await copyRows(
        tx,
        'audit_log',
        [
          'seq',
          'at',
          'action',
          'outcome',
          'code',
          'bot',
          'instance_id',
          'method',
          'actor',
          'remote',
          'details',
          'prev_hash',
          'hash',
        ],
        auditRows(),
      );
    });
    // What autovacuum would do soon after: planner statistics, and the visibility map that lets
    // index-only scans skip the heap.
    await sql.unsafe('VACUUM ANALYZE instances, certificates, audit_log').simple();
  } finally {
    await sql.end({ timeout: 5 });
  }
  return audited;
}
