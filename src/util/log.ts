/**
 * Structured logs with pino: JSON lines on stderr (stdout stays for command output), pretty
 * when stderr is a TTY. Secrets never reach a log line: known secret fields are redacted
 * by path as a second line of defence — the first is never passing them to the logger.
 *
 * pino-pretty (and its colour and date libraries) is loaded only when a TTY wants it: a daemon
 * under systemd, whose stderr is the journal, never pays for it (issue #19). It is a
 * synchronous require on first use because createLogger is synchronous.
 */
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';

export type { Logger };

const REDACT = [
  'token',
  '*.token',
  'evidence.token',
  'key',
  '*.key',
  'privateKey',
  '*.privateKey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
];

export function createLogger(opts: { name: string; level?: string; pretty?: boolean }): Logger {
  const level = opts.level ?? process.env.SIGIL_LOG_LEVEL ?? 'info';
  const base = { name: opts.name, level, redact: { paths: REDACT, censor: '[redacted]' } };
  const wantPretty = opts.pretty ?? (process.stderr.isTTY && process.env.SIGIL_LOG_FORMAT !== 'json');
  if (wantPretty) {
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    return pino(
      base,
      pretty({ destination: 2, sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }),
    );
  }
  return pino(base, pino.destination({ dest: 2, sync: true }));
}

/** A logger that drops everything (tests, `--quiet`). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
