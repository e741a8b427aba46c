/**
 * The connection pool to PostgreSQL (the `postgres` driver), and how its failures become Sigil's.
 *
 * - One pool per issuer: `max` connections (default 10), each statement prepared once per
 *   connection (the driver's automatic prepared statements), int8 read as a JS number (every
 *   int8 here is unix milliseconds or a row count, far below 2^53).
 * - The URL is libpq's: `postgres://user@host1:5432,host2:5432/sigil?target_session_attrs=read-write`
 *   tries the hosts in order and keeps only a connection that accepts writes, so after a failover
 *   the promoted standby is found on the next connect (the driver also takes `primary`, `standby`,
 *   `read-only`, `prefer-standby`; an issuer needs `read-write` or `primary`). `sslmode`,
 *   `sslrootcert`, `channel_binding`, `require_auth`, `connect_timeout` and PG* environment
 *   variables (PGPASSWORD, PGPASSFILE / ~/.pgpass) work as in libpq.
 * - Credentials are never logged: every message that names the database uses `redactStoreUrl`.
 * - A lost or refused connection, a server shutting down, a standby refusing writes: the store
 *   call rejects with SigilError `store_unavailable` (503, retryable). The agent retries the same
 *   request id; the transaction either committed (and the stored answer comes back) or left nothing.
 */
import { channel } from 'node:diagnostics_channel';
import postgres from 'postgres';
import { SigilError } from '../../../errors.js';

/** The statement runner: the pool, or the one connection of a transaction. */
export type Sql = postgres.ISql<Record<string, never>>;
export type Pool = postgres.Sql<Record<string, never>>;
export type TxSql = postgres.TransactionSql<Record<string, never>>;

export interface PostgresPoolOptions {
  /** Pool size (default 10). */
  max?: number;
  /** Seconds a connect may take (default 10). */
  connectTimeoutS?: number;
  /** A statement (waiting for a connection included) that takes longer fails as store_unavailable (default 30 s). */
  queryTimeoutS?: number;
  /** Lock waits longer than this fail the statement (default 5000 ms, as SQLite's busy_timeout). */
  lockTimeoutMs?: number;
  /** application_name shown in pg_stat_activity (default 'sigil-issuer'). */
  applicationName?: string;
  /** Called with each statement's text, for counting statements in tests and benchmarks. */
  onStatement?: (text: string) => void;
}

/** postgres:// or postgresql:// (libpq's two spellings). */
export function isPostgresUrl(s: string): boolean {
  return /^postgres(ql)?:\/\//i.test(s);
}

/**
 * The URL with any password replaced by `***` (user info and a `password=` parameter), for logs
 * and error messages. Works on multi-host URLs, which `new URL` does not parse.
 */
export function redactStoreUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*):[^@/]*@/i, '$1:***@').replace(/([?&]password=)[^&]*/gi, '$1***');
}

export function openPool(url: string, o: PostgresPoolOptions = {}): Pool {
  if (!isPostgresUrl(url))
    throw new SigilError(
      'config_invalid',
      `store URL must start with postgres:// or postgresql://, got ${redactStoreUrl(url)}`,
    );
  const onStatement = o.onStatement;
  try {
    return openPoolUnchecked(url, o, onStatement);
  } catch (err) {
    if (err instanceof SigilError) throw err;
    // The driver parses the URL here; its errors may quote the URL (Node's ERR_INVALID_URL keeps it as `input`).
    throw new SigilError(
      'config_invalid',
      `store URL ${redactStoreUrl(url)} is not usable: ${(err as { code?: string }).code ?? 'invalid'}`,
    );
  }
}

/**
 * The session kind an issuer connects to, as the driver's `target_session_attrs` option (which
 * takes precedence over the URL's). An issuer writes, so it must never settle on a standby:
 * - `read-write` (libpq: not in hot standby AND default_transaction_read_only off) is passed as
 *   `primary`: the `postgres` driver (v4.2) checks only default_transaction_read_only for
 *   `read-write`, and a hot standby reports that as off, so it would be accepted and refuse every
 *   write (25006). Measured in test/e2e/postgres-standby-promote.test.ts, which lists the standby first.
 * - unset is `primary` too (a multi-host URL without it would otherwise take the first host that
 *   answers, standby or not); `any` (the driver's null) is left to whoever asks for it explicitly.
 * - `read-only`, `standby`, `prefer-standby` are refused: an issuer on them could not write.
 */
export function issuerSessionAttrs(url: string, env: NodeJS.ProcessEnv = process.env): 'primary' | null {
  const fromUrl = /[?&]target_session_attrs=([^&]*)/.exec(url)?.[1];
  const wanted = decodeURIComponent(fromUrl ?? env['PGTARGETSESSIONATTRS'] ?? '') || 'read-write';
  if (wanted === 'read-write' || wanted === 'primary') return 'primary';
  if (wanted === 'any') return null;
  throw new SigilError(
    'config_invalid',
    `target_session_attrs=${wanted} cannot serve an issuer, which writes: use read-write (or primary)`,
  );
}

/**
 * Each statement an issuer's pool sends, as `{ conn, text }`, to in-process subscribers only
 * (bench/lib/issuer-probe.mjs counts statements and round trips per renewal under load: issue
 * #15's bench); with none subscribed nothing is published. No parameters: no request data.
 */
const statementChannel = channel('sigil:postgres:statement');

function openPoolUnchecked(url: string, o: PostgresPoolOptions, onStatement: PostgresPoolOptions['onStatement']): Pool {
  return postgres(url, {
    target_session_attrs: issuerSessionAttrs(url),
    max: o.max ?? 10,
    connect_timeout: o.connectTimeoutS ?? 10,
    // Backstop for a database that goes silent (a partition): without it a statement already sent
    // waits for TCP to notice, minutes. Lock waits end sooner (lock_timeout below).
    query_timeout: o.queryTimeoutS ?? 30,
    // Notices (e.g. "relation already exists, skipping" of IF NOT EXISTS) are not for the issuer log.
    onnotice: () => undefined,
    // No array or custom types are used: skip the type catalogue query on the first connect.
    fetch_types: false,
    types: { int8: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) } },
    connection: {
      application_name: o.applicationName ?? 'sigil-issuer',
      lock_timeout: o.lockTimeoutMs ?? 5000,
    },
    debug: onStatement
      ? (_conn: number, query: string) => onStatement(query)
      : (conn: number, query: string) => {
          if (statementChannel.hasSubscribers) statementChannel.publish({ conn, text: query });
        },
  }) as unknown as Pool;
}

/**
 * The change feed's own connection (./change-feed.ts): one, never idle-closed or recycled (a
 * recycled connection would silently stop listening), no statement timeout (it waits for
 * notifications), the driver's notification and close callbacks passed through.
 */
export function openListener(
  url: string,
  o: PostgresPoolOptions & { onnotify: (channel: string, payload: string) => void; onclose: () => void },
): Pool {
  return postgres(url, {
    target_session_attrs: issuerSessionAttrs(url),
    max: 1,
    idle_timeout: 0,
    max_lifetime: null,
    connect_timeout: o.connectTimeoutS ?? 10,
    onnotify: o.onnotify,
    onclose: o.onclose,
    onnotice: () => undefined,
    fetch_types: false,
    connection: { application_name: `${o.applicationName ?? 'sigil-issuer'}-listener` },
  }) as unknown as Pool;
}

/** SQLSTATEs after which the whole transaction may simply run again (types.ts header). */
const RETRY_TX = new Set(['40001', '40P01']);

export function isRetryableTxError(err: unknown): boolean {
  return RETRY_TX.has((err as { code?: unknown })?.code as string);
}

/** Driver and socket codes that mean "no usable connection", not "your statement was wrong". */
const UNAVAILABLE = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'QUEUE_TIMEOUT',
  'QUERY_TIMEOUT',
  'CANCEL_UNANSWERED',
  'TLS_HANDSHAKE_FAILED',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  // SQLSTATEs: admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections,
  // read_only_sql_transaction (a standby: the primary moved), the 08 class (connection exceptions).
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '25006',
]);

export function isUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string') return false;
  return UNAVAILABLE.has(code) || /^08/.test(code);
}

/**
 * A failure from the pool as the issuer should see it: connection trouble becomes
 * `store_unavailable` naming the database without credentials (the driver's own error is not kept
 * as the cause: it may carry the connection options); anything else passes through unchanged
 * (constraint violations, the store's own SigilErrors, TypeErrors of a caller bug).
 */
export function toStoreError(err: unknown, where: string): unknown {
  if (err instanceof SigilError) return err;
  const code = (err as { code?: unknown })?.code;
  // A refused login (class 28) or a missing database (3D000) will not heal by retrying: say what to fix.
  if (typeof code === 'string' && (/^28/.test(code) || code === '3D000'))
    return new SigilError(
      'config_invalid',
      code === '3D000'
        ? `the database in ${where} does not exist (create it first: createdb -O <role> <name>)`
        : `the database server ${where} refused the login (${code}): check the user and password (PGPASSWORD, ~/.pgpass) and pg_hba.conf`,
    );
  if (!isUnavailable(err)) return err;
  return new SigilError(
    'store_unavailable',
    `the issuer's database ${where} is unavailable (${String(code)}); retry the same request (same request id) later`,
  );
}
