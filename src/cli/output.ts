/**
 * CLI output conventions (ARCHITECTURE "Conventions"): listings take `--format json` (one JSON
 * document on stdout) besides a human table; errors are one stderr line `error[CODE]: message`
 * (with `--format json`: one JSON line `{"error":{"code","message","retryable"}}`).
 */
import { SigilError, toSigilError } from '../errors.js';

export type Format = 'table' | 'json';

/** Exit codes: 1 refused/failed, 2 bad input or config, 75 temporary (EX_TEMPFAIL: retry later). */
export const EXIT = { failed: 1, usage: 2, tempfail: 75 } as const;

export function parseFormat(v: string | undefined): Format {
  if (v === undefined || v === 'table' || v === 'text') return 'table';
  if (v === 'json') return 'json';
  throw new SigilError('bad_request', `--format must be json or table (got "${v}")`);
}

export function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}

/** A plain aligned table; `cols` picks and orders the columns. */
export function printTable(rows: Array<Record<string, unknown>>, cols: string[]): void {
  if (rows.length === 0) {
    process.stdout.write('(none)\n');
    return;
  }
  const cell = (v: unknown): string =>
    v === null || v === undefined
      ? '-'
      : Array.isArray(v)
        ? v.join(',')
        : typeof v === 'object'
          ? JSON.stringify(v)
          : String(v);
  const data = rows.map((r) => cols.map((c) => cell(r[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...data.map((d) => d[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  process.stdout.write([line(cols.map((c) => c.toUpperCase())), ...data.map(line)].join('\n') + '\n');
}

export function printKv(obj: Record<string, unknown>): void {
  const w = Math.max(...Object.keys(obj).map((k) => k.length));
  for (const [k, v] of Object.entries(obj))
    process.stdout.write(`${k.padEnd(w)}  ${v === null || v === undefined ? '-' : String(v)}\n`);
}

const USAGE_CODES = new Set([
  'bad_request',
  'config_invalid',
  'policy_invalid',
  'ttl_invalid',
  'unsafe_path',
  'not_initialized',
  'already_initialized',
  'data_dir_insecure',
  'not_found',
  'unknown_bot',
  // A data directory or database a newer Sigil migrated: a deployment to fix, not a moment to wait out.
  'store_schema_newer',
]);

/**
 * Errors follow the output format: with `--format json` anywhere on the command line (also
 * where the failing command does not take it) a script reading stderr gets one JSON line.
 */
export function jsonErrorsRequested(argv: readonly string[] = process.argv): boolean {
  return argv.some((a, i) => a === '--format=json' || (a === '--format' && argv[i + 1] === 'json'));
}

/** What to try next, for failures whose raw cause (an errno) says little to a new operator. */
function nextStep(message: string): string {
  if (/cannot reach the issuer at \S+: ECONNREFUSED/.test(message))
    return ' (nothing accepts connections there: is `sigil server start` running, and is the port right?)';
  return '';
}

/** Print one line (plain or JSON) and return the exit code for `err`. Never prints a stack trace. */
export function reportError(err: unknown, opts: { json?: boolean } = {}): number {
  const e = toSigilError(err);
  const raw =
    e.code === 'internal' && !(err instanceof SigilError) ? `${(err as Error)?.message ?? String(err)}` : e.message;
  const msg = raw.replace(/\s*\n\s*/g, ' ') + nextStep(raw);
  if (opts.json ?? jsonErrorsRequested())
    process.stderr.write(JSON.stringify({ error: { code: e.code, message: msg, retryable: e.retryable } }) + '\n');
  else process.stderr.write(`error[${e.code}]: ${msg}\n`);
  if (process.env.SIGIL_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  if (e.retryable) return EXIT.tempfail;
  return USAGE_CODES.has(e.code) ? EXIT.usage : EXIT.failed;
}
