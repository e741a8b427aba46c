import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { createLogger, silentLogger, type LoggerOptions } from '../../../src/util/log.js';

const ROOT = resolve(import.meta.dirname, '../../..');

function capture(opts: Partial<LoggerOptions> = {}) {
  const lines: string[] = [];
  const log = createLogger({
    name: 'test',
    level: 'trace',
    pretty: false,
    ...opts,
    destination: { write: (l) => lines.push(l) },
  });
  const parsed = (): Array<Record<string, unknown>> => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, lines, parsed };
}

describe('log lines (pino layout)', () => {
  it('writes one JSON line per call: level number, time, pid, hostname, name, bindings, fields, msg', () => {
    const { log, lines } = capture();
    const before = Date.now();
    log.child({ component: 'renew' }).info({ serial: 'ab', n: 2 }, 'renewed');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith('}\n')).toBe(true);
    const o = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(Object.keys(o)).toEqual(['level', 'time', 'pid', 'hostname', 'name', 'component', 'serial', 'n', 'msg']);
    expect(o).toMatchObject({ level: 30, pid: process.pid, hostname: hostname(), name: 'test', msg: 'renewed' });
    expect(o.time).toBeGreaterThanOrEqual(before);
  });

  it('a message alone, and each level with its pino number', () => {
    const { log, parsed } = capture();
    log.trace('t');
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    log.fatal('f');
    expect(parsed().map((o) => [o.level, o.msg])).toEqual([
      [10, 't'],
      [20, 'd'],
      [30, 'i'],
      [40, 'w'],
      [50, 'e'],
      [60, 'f'],
    ]);
  });

  it('drops lines below the level; silent drops everything', () => {
    const { log, parsed } = capture({ level: 'warn' });
    log.info('no');
    log.debug({ a: 1 }, 'no');
    log.warn('yes');
    expect(parsed().map((o) => o.msg)).toEqual(['yes']);
    expect(log.isLevelEnabled('info')).toBe(false);
    expect(log.isLevelEnabled('error')).toBe(true);
    const quiet = capture({ level: 'silent' });
    quiet.log.fatal('no');
    expect(quiet.lines).toEqual([]);
  });

  it('takes the level from SIGIL_LOG_LEVEL when none is given', () => {
    const saved = process.env.SIGIL_LOG_LEVEL;
    process.env.SIGIL_LOG_LEVEL = 'error';
    try {
      const lines: string[] = [];
      const log = createLogger({ name: 't', pretty: false, destination: { write: (l) => lines.push(l) } });
      log.warn('no');
      log.error('yes');
      expect(lines).toHaveLength(1);
    } finally {
      if (saved === undefined) delete process.env.SIGIL_LOG_LEVEL;
      else process.env.SIGIL_LOG_LEVEL = saved;
    }
  });

  it('refuses an unknown level with a coded error that names it', () => {
    const e = (() => {
      try {
        createLogger({ name: 't', level: 'verbose' });
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(SigilError);
    expect((e as SigilError).code).toBe('config_invalid');
    expect((e as SigilError).message).toContain('"verbose"');
  });
});

describe('secrets never reach a line', () => {
  it('redacts secret-named fields at the top level and at any depth', () => {
    const { log, lines, parsed } = capture();
    log.info(
      {
        token: 'tok-top',
        evidence: { token: 'tok-nested', kind: 'join' },
        req: { headers: { authorization: 'Bearer abc', host: 'h' } },
        keys: [{ privateKey: 'pk-in-array' }],
        key: 'k',
      },
      'join',
    );
    for (const secret of ['tok-top', 'tok-nested', 'Bearer abc', 'pk-in-array']) expect(lines[0]).not.toContain(secret);
    const o = parsed()[0]!;
    expect(o.token).toBe('[redacted]');
    expect(o.key).toBe('[redacted]');
    expect(o.evidence).toEqual({ token: '[redacted]', kind: 'join' });
    expect(o.req).toEqual({ headers: { authorization: '[redacted]', host: 'h' } });
    expect(o.keys).toEqual([{ privateKey: '[redacted]' }]);
  });

  it('redacts in child bindings and in the terminal form too', () => {
    const { log, lines } = capture();
    log.child({ authorization: 'Bearer x' }).info('a');
    expect(lines[0]).not.toContain('Bearer x');
    const tty: string[] = [];
    createLogger({ name: 'n', level: 'info', pretty: true, destination: { write: (l) => tty.push(l) } }).warn(
      { evidence: { token: 'secret-tok' }, serial: 's1' },
      'refused',
    );
    expect(tty[0]).not.toContain('secret-tok');
    expect(tty[0]).toMatch(/WARN.*\(n\): refused \{"evidence":\{"token":"\[redacted\]"\},"serial":"s1"\}\n$/);
  });
});

describe('values that are awkward to write', () => {
  it('writes errors as type, message, code, stack and cause', () => {
    const { log, parsed } = capture();
    const cause = new Error('socket hang up');
    const e = new SigilError('issuer_unreachable', 'the issuer did not answer', { cause });
    log.error({ err: e }, 'renewal failed');
    const err = parsed()[0]!.err as Record<string, unknown>;
    expect(err).toMatchObject({ type: 'SigilError', code: 'issuer_unreachable', message: 'the issuer did not answer' });
    expect(String(err.stack)).toContain('the issuer did not answer');
    expect((err.cause as Record<string, unknown>).message).toBe('socket hang up');
  });

  it('an error passed alone becomes err, its message the msg', () => {
    const { log, parsed } = capture();
    log.warn(new TypeError('bad'));
    expect(parsed()[0]).toMatchObject({ msg: 'bad', err: { type: 'TypeError', message: 'bad' } });
  });

  it('never throws: cycles, bigints, a throwing toJSON, a failing destination', () => {
    const { log, parsed } = capture();
    const a: Record<string, unknown> = { name: 'a' };
    a.self = a;
    const e = new Error('loop');
    (e as { cause?: unknown }).cause = e;
    log.info(
      {
        a,
        big: 10n,
        e,
        bad: {
          toJSON: () => {
            throw new Error('no');
          },
        },
      },
      'odd',
    );
    const o = parsed()[0]!;
    expect(o.a).toEqual({ name: 'a', self: '[Circular]' });
    expect(o.big).toBe('10');
    expect((o.e as Record<string, unknown>).cause).toBe('[Circular]');
    expect(o.bad).toBe('[unserialisable]');
    // The same object twice side by side is not a cycle.
    const shared = { v: 1 };
    log.info({ x: [shared, shared] }, 'twice');
    expect(parsed()[1]!.x).toEqual([{ v: 1 }, { v: 1 }]);
    const broken = createLogger({
      name: 'b',
      level: 'info',
      pretty: false,
      destination: {
        write: () => {
          throw new Error('EPIPE');
        },
      },
    });
    expect(() => broken.error('still fine')).not.toThrow();
  });

  it('silentLogger writes nothing', () => {
    expect(() => silentLogger().fatal({ token: 'x' }, 'nothing')).not.toThrow();
    expect(silentLogger().isLevelEnabled('fatal')).toBe(false);
  });
});

describe('stderr', () => {
  it('a line logged just before process.exit is on stderr (synchronous write)', () => {
    const script = `import { createLogger } from ${JSON.stringify(`${ROOT}/src/util/log.ts`)};
      const log = createLogger({ name: 'exit-test', level: 'info' });
      for (let i = 0; i < 200; i++) log.info({ i, pad: 'x'.repeat(500) }, 'line');
      log.fatal({ token: 'never-shown' }, 'last words');
      process.exit(3);`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
    });
    expect(r.status).toBe(3);
    const lines = r.stderr
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'));
    expect(lines).toHaveLength(201);
    expect(JSON.parse(lines[200]!)).toMatchObject({
      level: 60,
      name: 'exit-test',
      msg: 'last words',
      token: '[redacted]',
    });
    expect(r.stderr).not.toContain('never-shown');
  });
});
