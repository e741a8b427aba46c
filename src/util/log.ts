/**
 * Structured logs: JSON lines on stderr (stdout stays for command output), a short human form
 * when stderr is a TTY. The line layout is pino's (`level` as a number, `time` in ms, `pid`,
 * `hostname`, `name`, the child bindings, the fields, `msg`), so anything that reads pino
 * logs (pino-pretty, log shippers, the tests' `"msg":"renewed"` matchers) reads these.
 *
 * Why not pino itself (issue #19): the agent daemon's idle budget is 1.3× a bare node process,
 * and pino with its stream, redaction and serializer modules was measured at +3.4 MB resident
 * in the bundle — a tenth of the budget — for features Sigil does not use (transports, async
 * buffering, printf formatting, custom serializers). What Sigil needs is here: levels, child
 * bindings, synchronous writes (a line is out before a crash or `process.exit`), errors turned
 * into {type, message, code, stack}, and redaction.
 *
 * Secrets never reach a log line: the first line of defence is never passing them; the second
 * is here — any field named like a secret (`token`, `key`, `privateKey`, `authorization`), at any
 * depth, is written as "[redacted]". That is stricter than redacting listed paths: a new field
 * nested one level deeper than the list foresaw is still covered.
 */
import { writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { SigilError } from '../errors.js';

export type LevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
export type LogLevel = LevelName | 'silent';

/** A log call: fields then message (the house style), or a message alone. */
export interface LogFn {
  (fields: object, msg?: string): void;
  (msg: string): void;
}

export interface Logger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
  /** A logger whose lines also carry `bindings` (e.g. the component or join method). */
  child(bindings: Record<string, unknown>): Logger;
  isLevelEnabled(level: LevelName): boolean;
}

/** pino's numbers, so level filters written for pino logs keep working. */
const LEVEL_VALUE: Readonly<Record<LogLevel, number>> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Infinity,
};
const SECRET_FIELDS: ReadonlySet<string> = new Set(['token', 'key', 'privateKey', 'authorization']);
const REDACTED = '[redacted]';

/** Where finished lines go: stderr by default; tests pass their own. */
export interface LogDestination {
  write(line: string): void;
}

export interface LoggerOptions {
  name: string;
  /** Default: SIGIL_LOG_LEVEL, else info. */
  level?: string;
  /** Default: stderr is a TTY and SIGIL_LOG_FORMAT is not `json`. */
  pretty?: boolean;
  destination?: LogDestination;
}

export function createLogger(opts: LoggerOptions): Logger {
  const level = parseLevel(opts.level ?? process.env.SIGIL_LOG_LEVEL ?? 'info');
  const pretty = opts.pretty ?? (process.stderr.isTTY === true && process.env.SIGIL_LOG_FORMAT !== 'json');
  const sink: Sink = {
    threshold: LEVEL_VALUE[level],
    dest: opts.destination ?? STDERR,
    pretty,
    // The fixed head of every line, serialised once.
    head: `"pid":${process.pid},"hostname":${JSON.stringify(hostname())}`,
  };
  return new LineLogger(sink, { name: opts.name });
}

/** A logger that drops everything (tests, `--quiet`). */
export function silentLogger(): Logger {
  return createLogger({ name: 'silent', level: 'silent', pretty: false });
}

function parseLevel(s: string): LogLevel {
  if (Object.hasOwn(LEVEL_VALUE, s)) return s as LogLevel;
  throw new SigilError(
    'config_invalid',
    `log level ${JSON.stringify(s)} is not one of ${Object.keys(LEVEL_VALUE).join(', ')} (check SIGIL_LOG_LEVEL / log_level)`,
  );
}

interface Sink {
  readonly threshold: number;
  readonly dest: LogDestination;
  readonly pretty: boolean;
  readonly head: string;
}

class LineLogger implements Logger {
  readonly trace: LogFn;
  readonly debug: LogFn;
  readonly info: LogFn;
  readonly warn: LogFn;
  readonly error: LogFn;
  readonly fatal: LogFn;

  constructor(
    private readonly sink: Sink,
    private readonly bindings: Record<string, unknown>,
  ) {
    const fn = (name: LevelName): LogFn => {
      const value = LEVEL_VALUE[name];
      if (value < sink.threshold) return noop;
      return (a: object | string, msg?: string) => this.write(name, a, msg);
    };
    this.trace = fn('trace');
    this.debug = fn('debug');
    this.info = fn('info');
    this.warn = fn('warn');
    this.error = fn('error');
    this.fatal = fn('fatal');
  }

  child(bindings: Record<string, unknown>): Logger {
    return new LineLogger(this.sink, { ...this.bindings, ...bindings });
  }

  isLevelEnabled(level: LevelName): boolean {
    return LEVEL_VALUE[level] >= this.sink.threshold;
  }

  private write(level: LevelName, a: object | string, msg: string | undefined): void {
    const fields: object = typeof a === 'string' ? {} : a instanceof Error ? { err: a } : a;
    const text = typeof a === 'string' ? a : (msg ?? (a instanceof Error ? a.message : undefined));
    const time = Date.now();
    const line = this.sink.pretty
      ? prettyLine(level, time, this.bindings, fields, text)
      : jsonLine(this.sink.head, level, time, this.bindings, fields, text);
    try {
      this.sink.dest.write(line);
    } catch {
      // A log line that cannot be written (stderr closed, journald restarting) must not take
      // the agent down with it: the identity work matters more than its log.
    }
  }
}

function noop(): void {}

function jsonLine(
  head: string,
  level: LevelName,
  time: number,
  bindings: Record<string, unknown>,
  fields: object,
  msg: string | undefined,
): string {
  const members = fieldMembers(bindings, fields);
  const text = msg !== undefined ? `,"msg":${JSON.stringify(msg)}` : '';
  return `{"level":${LEVEL_VALUE[level]},"time":${time},${head}${members ? `,${members}` : ''}${text}}\n`;
}

/** The `"key":value` members of the bindings then the fields, comma-separated, secrets redacted. */
function fieldMembers(bindings: Record<string, unknown>, fields: object): string {
  const out: string[] = [];
  for (const src of [bindings, fields]) {
    for (const [k, v] of Object.entries(src)) {
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
      out.push(`${JSON.stringify(k)}:${SECRET_FIELDS.has(k) ? `"${REDACTED}"` : safeJson(v)}`);
    }
  }
  return out.join(',');
}

const LEVEL_LABEL: Readonly<Record<LevelName, string>> = {
  trace: '\x1b[90mTRACE\x1b[39m',
  debug: '\x1b[34mDEBUG\x1b[39m',
  info: '\x1b[32mINFO\x1b[39m',
  warn: '\x1b[33mWARN\x1b[39m',
  error: '\x1b[31mERROR\x1b[39m',
  fatal: '\x1b[41mFATAL\x1b[49m',
};

/** `10:41:07.123 INFO (sigil-agent): renewed {"serial":"…"}` — for a person at a terminal. */
function prettyLine(
  level: LevelName,
  time: number,
  bindings: Record<string, unknown>,
  fields: object,
  msg: string | undefined,
): string {
  const d = new Date(time);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  const clock = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  const { name, ...rest } = bindings;
  const members = fieldMembers(rest, fields);
  const tail = members ? ` {${members}}` : '';
  return `${clock} ${LEVEL_LABEL[level]} (${String(name)}): ${msg ?? ''}${tail}\n`;
}

/**
 * JSON of a field value that never throws: errors become {type, message, code, stack, cause},
 * secret-named keys at any depth are redacted, bigints become strings, a circular reference is
 * written as "[Circular]" (a log call must not fail because of what it was given).
 */
function safeJson(v: unknown): string {
  // JSON.stringify calls the replacer depth-first with `this` = the holder of the key: `path`
  // holds what is being written on the way down (as written: an error's field object), `seen`
  // the values they came from, so a value met again on its own path is a cycle.
  const path: object[] = [];
  const seen: object[] = [];
  const replacer = function (this: unknown, k: string, val: unknown): unknown {
    if (k !== '' && SECRET_FIELDS.has(k)) return REDACTED;
    if (typeof val === 'bigint') return val.toString();
    if (val === null || typeof val !== 'object') return val;
    while (path.length && path[path.length - 1] !== this) (path.pop(), seen.pop());
    if (seen.includes(val)) return '[Circular]';
    const out = val instanceof Error ? errorFields(val) : val;
    path.push(out);
    seen.push(val);
    return out;
  };
  try {
    return JSON.stringify(v, replacer) ?? 'null';
  } catch {
    return '"[unserialisable]"';
  }
}

function errorFields(e: Error): Record<string, unknown> {
  const code = (e as { code?: unknown }).code;
  return {
    type: e.name,
    message: e.message,
    ...(code !== undefined ? { code } : {}),
    stack: e.stack,
    ...(e.cause !== undefined ? { cause: e.cause } : {}),
  };
}

/** stderr, written synchronously so a line is out before an exit (see the header). */
const STDERR: LogDestination = {
  write(line: string): void {
    writeAll(2, Buffer.from(line));
  },
};

/** writeSync until everything is out; a non-blocking stderr pipe that is full says EAGAIN. */
function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  let spins = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' || ++spins > 1000) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}
