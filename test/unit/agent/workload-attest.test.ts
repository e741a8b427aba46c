/**
 * Caller attestation (src/agent/workload/attest.ts, proc.ts, listener.ts) against a fake /proc:
 * the pid-reuse checks, the uid cross-check, the selectors, and the socket path refusals.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server } from '@grpc/grpc-js';
import { SigilError } from '../../../src/errors.js';
import { attestProcess, entryMatches, missingSelectors, sha256Needed } from '../../../src/agent/workload/attest.js';
import { entitlement } from '../../../src/agent/workload/callers.js';
import { setSocketMode, WorkloadListener } from '../../../src/agent/workload/listener.js';
import { warnExecutableOnlyEntries } from '../../../src/agent/workload/server.js';
import { processStartTime, systemdUnitOfCgroup } from '../../../src/agent/workload/proc.js';
import { createLogger, silentLogger } from '../../../src/util/log.js';

let dir: string;
let proc: string;
let accounts: { passwd: string; group: string };

function fakeProcess(
  pid: number,
  o: { start: string; euid: number; exe?: string; cgroup?: string; comm?: string },
): void {
  const d = join(proc, String(pid));
  mkdirSync(d, { recursive: true });
  // Field 2 may contain spaces and parentheses; field 22 is the start time.
  const fields = ['S', ...Array.from({ length: 18 }, (_, i) => String(i + 4)), o.start, '0', '0'];
  writeFileSync(join(d, 'stat'), `${pid} (${o.comm ?? 'a) b'}) ${fields.join(' ')}\n`);
  writeFileSync(join(d, 'status'), `Name:\tx\nUid:\t${o.euid}\t${o.euid}\t${o.euid}\t${o.euid}\nGid:\t5\t5\t5\t5\n`);
  if (o.exe) symlinkSync(o.exe, join(d, 'exe'));
  if (o.cgroup) writeFileSync(join(d, 'cgroup'), o.cgroup);
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof SigilError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'no error';
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-attest-'));
  proc = join(dir, 'proc');
  accounts = { passwd: join(dir, 'passwd'), group: join(dir, 'group') };
  writeFileSync(accounts.passwd, 'root:x:0:0::/root:/bin/sh\nweb:x:1000:1000::/srv:/bin/sh\n');
  writeFileSync(accounts.group, 'root:x:0:\nweb:x:1000:\n');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('attestProcess', () => {
  it('gives the kernel’s uid/gid, the names, the executable and the systemd unit, sorted', () => {
    writeFileSync(join(dir, 'envoy'), 'binary');
    fakeProcess(77, {
      start: '12345',
      euid: 1000,
      exe: join(dir, 'envoy'),
      cgroup: '0::/system.slice/envoy.service\n',
    });
    expect(attestProcess({ pid: 77, uid: 1000, gid: 1000 }, '12345', { procRoot: proc, accounts })).toEqual(
      [
        'systemd:unit:envoy.service',
        'unix:gid:1000',
        'unix:group:web',
        `unix:path:${join(dir, 'envoy')}`,
        'unix:uid:1000',
        'unix:user:web',
      ].sort(),
    );
  });

  it('unix:sha256 only when opted in, and only under the size limit', () => {
    writeFileSync(join(dir, 'bin'), 'abc');
    fakeProcess(78, { start: '1', euid: 1000, exe: join(dir, 'bin') });
    const base = { procRoot: proc, accounts };
    const sha = 'unix:sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
    expect(attestProcess({ pid: 78, uid: 1000, gid: 1000 }, '1', base)).not.toContain(sha);
    expect(attestProcess({ pid: 78, uid: 1000, gid: 1000 }, '1', { ...base, sha256MaxBytes: 3 })).toContain(sha);
    expect(attestProcess({ pid: 78, uid: 1000, gid: 1000 }, '1', { ...base, sha256MaxBytes: 2 })).not.toContain(sha);
  });

  it('refuses a pid whose start time is not the one recorded at accept (pid reused since)', () => {
    fakeProcess(79, { start: '500', euid: 1000 });
    expect(codeOf(() => attestProcess({ pid: 79, uid: 1000, gid: 1000 }, '499', { procRoot: proc, accounts }))).toMatch(
      /^unauthorized: pid 79 now belongs to another process/,
    );
  });

  it('refuses a pid that now runs as another user than the one the kernel recorded at connect', () => {
    // The attacker (uid 1000) connected, handed the socket on and exited; the pid is now root's.
    fakeProcess(80, { start: '600', euid: 0, exe: '/usr/bin/envoy' });
    expect(codeOf(() => attestProcess({ pid: 80, uid: 1000, gid: 1000 }, '600', { procRoot: proc, accounts }))).toMatch(
      /^unauthorized: pid 80 runs as uid 0 but connected as uid 1000/,
    );
  });

  it('pins the executable to the one recorded at accept: another inode now is refused; unknown then gives no path', () => {
    writeFileSync(join(dir, 'a'), 'a');
    writeFileSync(join(dir, 'b'), 'b');
    fakeProcess(82, { start: '7', euid: 1000, exe: join(dir, 'b') });
    const a = statSync(join(dir, 'a'), { bigint: true });
    const b = statSync(join(dir, 'b'), { bigint: true });
    const base = { procRoot: proc, accounts };
    const peer = { pid: 82, uid: 1000, gid: 1000 };
    expect(codeOf(() => attestProcess(peer, '7', base, { dev: String(a.dev), ino: String(a.ino) }))).toMatch(
      /^unauthorized: pid 82 no longer runs the executable it ran when it connected .*the executable check failed/,
    );
    expect(attestProcess(peer, '7', base, { dev: String(b.dev), ino: String(b.ino) })).toContain(
      `unix:path:${join(dir, 'b')}`,
    );
    expect(
      attestProcess(peer, '7', { ...base, sha256MaxBytes: 10 }, null).some((x) => /^unix:(path|sha256):/.test(x)),
    ).toBe(false);
  });

  it('hashes only for a caller who could match an entry using unix:sha256', () => {
    const sha = `unix:sha256:${'a'.repeat(64)}`;
    const entries = [{ selectors: ['unix:uid:1000', sha] }, { selectors: ['unix:uid:2000'] }];
    expect(sha256Needed(entries, ['unix:uid:1000', 'unix:gid:5'])).toBe(true);
    expect(sha256Needed(entries, ['unix:uid:2000', 'unix:gid:5'])).toBe(false);
    expect(sha256Needed([{ selectors: [sha] }], ['unix:uid:3'])).toBe(true);
  });

  it('refuses a process that is gone', () => {
    expect(codeOf(() => attestProcess({ pid: 81, uid: 1000, gid: 1000 }, '1', { procRoot: proc, accounts }))).toMatch(
      /^unauthorized: the calling process 81 has exited/,
    );
  });

  it('reads this very process from the real /proc', () => {
    const start = processStartTime(process.pid);
    expect(start).toMatch(/^\d+$/);
    const sel = attestProcess({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() }, start);
    expect(sel).toContain(`unix:uid:${process.getuid!()}`);
    expect(sel).toContain(`unix:path:${process.execPath}`);
  });
});

describe('selectors and entries', () => {
  it('an entry matches when the caller has every selector; an entry without selectors never', () => {
    const caller = new Set(['unix:uid:1000', 'unix:user:web']);
    expect(entryMatches(['unix:uid:1000'], caller)).toBe(true);
    expect(entryMatches(['unix:uid:1000', 'unix:path:/x'], caller)).toBe(false);
    expect(entryMatches([], caller)).toBe(false);
    expect(missingSelectors(['unix:uid:1000', 'unix:path:/x'], caller)).toEqual(['unix:path:/x']);
  });

  it('an SVID cached under an entry whose SPIFFE ID has changed is not served', () => {
    const e = {
      id: 'x',
      spiffeId: 'spiffe://td/new',
      selectors: ['unix:uid:1'],
      ttlS: 60,
      dnsNames: [],
      jwtAudiences: [],
    };
    const svid = {
      entryId: 'x',
      spiffeId: 'spiffe://td/old',
      keyPem: '',
      chainPem: '',
      serial: '1',
      notAfter: 0,
      renewAfter: 0,
      savedAt: 0,
    };
    const ent = entitlement(['unix:uid:1'], { entries: [e], svids: new Map([['x', svid]]), bundles: undefined });
    expect(ent.entries.map((x) => x.id)).toEqual(['x']);
    expect(ent.svids).toEqual([]);
  });

  it('systemd unit: the innermost service or scope of the cgroup path', () => {
    expect(systemdUnitOfCgroup('0::/system.slice/envoy.service\n')).toBe('envoy.service');
    expect(systemdUnitOfCgroup('0::/user.slice/user-1000.slice/session-3.scope\n')).toBe('session-3.scope');
    expect(systemdUnitOfCgroup('0::/system.slice/docker-abc.scope/init.scope\n')).toBe('init.scope');
    expect(systemdUnitOfCgroup('12:cpu:/x\n1:name=systemd:/system.slice/sshd.service\n')).toBe('sshd.service');
    expect(systemdUnitOfCgroup('0::/\n')).toBeUndefined();
  });
});

describe('the socket path', () => {
  const reader = { read: () => ({ pid: 1, uid: 0, gid: 0 }) };

  it('refuses a symbolic link at the socket path (never follows or removes it)', async () => {
    const target = join(dir, 'elsewhere.sock');
    const path = join(dir, 'agent.sock');
    symlinkSync(target, path);
    const l = new WorkloadListener(path, reader, silentLogger());
    await expect(l.listen(new Server())).rejects.toMatchObject({
      code: 'unsafe_path',
      message: expect.stringContaining('is a symbolic link'),
    });
  });

  it('refuses to replace a regular file; replaces a stale socket', async () => {
    const path = join(dir, 'agent.sock');
    writeFileSync(path, 'not a socket');
    await expect(new WorkloadListener(path, reader, silentLogger()).listen(new Server())).rejects.toMatchObject({
      code: 'unsafe_path',
    });
    rmSync(path);
    const first = new WorkloadListener(path, reader, silentLogger());
    await first.listen(new Server());
    // A crashed agent leaves its socket behind: the next start must not fail on it.
    const second = new WorkloadListener(path, reader, silentLogger());
    await second.listen(new Server());
    await second.close();
    await first.close();
  });

  it('creates the socket 0666 (anyone may ask; attestation decides)', async () => {
    const path = join(dir, 'agent.sock');
    const l = new WorkloadListener(path, reader, silentLogger());
    await l.listen(new Server());
    expect(lstatSync(path).mode & 0o7777).toBe(0o666);
    await l.close();
  });

  it('sets the socket mode without following a link put at the path (the file it points to keeps its mode)', () => {
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'secret', { mode: 0o600 });
    const path = join(dir, 'agent.sock');
    symlinkSync(victim, path);
    expect(() => setSocketMode(path, 0o666)).toThrow(expect.objectContaining({ code: 'unsafe_path' }));
    expect(statSync(victim).mode & 0o7777).toBe(0o600);
  });

  it('refuses a socket directory that group or others may write without the sticky bit; a sticky one is fine', async () => {
    for (const [mode, ok] of [
      [0o777, false],
      [0o775, false],
      [0o1777, true],
      [0o755, true],
    ] as const) {
      const sub = join(dir, `d${mode.toString(8)}`);
      mkdirSync(sub);
      chmodSync(sub, mode);
      const l = new WorkloadListener(join(sub, 'agent.sock'), reader, silentLogger());
      if (ok) {
        await l.listen(new Server());
        await l.close();
      } else
        await expect(l.listen(new Server())).rejects.toMatchObject({
          code: 'unsafe_path',
          message: expect.stringContaining('the socket directory mode check failed'),
        });
    }
  });

  it('refuses a socket directory that is a symbolic link', async () => {
    mkdirSync(join(dir, 'real'), { mode: 0o755 });
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    await expect(
      new WorkloadListener(join(dir, 'link', 'agent.sock'), reader, silentLogger()).listen(new Server()),
    ).rejects.toMatchObject({ code: 'unsafe_path', message: expect.stringContaining('symbolic link') });
  });

  it.runIf(process.getuid?.() === 0)(
    'refuses a socket directory owned by another (unprivileged) user, who could replace the socket',
    async () => {
      const sub = join(dir, 'theirs');
      mkdirSync(sub, { mode: 0o755 });
      chownSync(sub, 41071, 41071);
      await expect(
        new WorkloadListener(join(sub, 'agent.sock'), reader, silentLogger()).listen(new Server()),
      ).rejects.toMatchObject({
        code: 'unsafe_path',
        message: expect.stringContaining('owned by uid 41071, not root'),
      });
    },
  );
});

describe('entries that select by executable only', () => {
  it('are warned about once each at load: any user who can run the binary gets them', () => {
    const lines: string[] = [];
    const log = createLogger({ name: 't', level: 'warn', pretty: false, destination: { write: (l) => lines.push(l) } });
    const entries = [
      { id: 'p', selectors: ['unix:path:/usr/bin/envoy'] },
      { id: 's', selectors: [`unix:sha256:${'a'.repeat(64)}`, 'unix:path:/usr/bin/envoy'] },
      { id: 'ok', selectors: ['unix:uid:1000', 'unix:path:/usr/bin/envoy'] },
    ];
    const warned = new Set<string>();
    warnExecutableOnlyEntries(entries, log, warned);
    warnExecutableOnlyEntries(entries, log, warned);
    expect(lines.map((l) => (JSON.parse(l) as { entry: string }).entry)).toEqual(['p', 's']);
    expect(lines[0]).toContain('add a unix:uid, unix:gid or systemd:unit selector');
  });
});
