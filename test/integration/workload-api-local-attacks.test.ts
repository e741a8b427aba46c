/**
 * Local users against the Workload API socket (docs/workload-api.md, threats): real processes
 * under real unprivileged uids (spawned with `uid`/`gid`, so this needs root), the agent's real
 * listener, attestation and hashing.
 *
 * - one uid cannot take every connection (per-uid limit), nor keep idle connections, nor keep
 *   the connection of a call it was refused;
 * - `unix:sha256`: the executable is hashed only for a caller who could match an entry using
 *   it, once per file, and without holding the event loop for the whole file;
 * - a process that connected and then exec'd the binary an entry names does not get that entry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openAgentState, type AgentState } from '../../src/agent/state/index.js';
import type { ListenerLimits } from '../../src/agent/workload/listener.js';
import { PROTO_OPTIONS, WORKLOAD_PROTO } from '../../src/agent/workload/protos.js';
import { WorkloadApiServer } from '../../src/agent/workload/server.js';
import { createLogger, silentLogger, type Logger } from '../../src/util/log.js';
import { entry, FakeWorkloadIssuer, TRUST_DOMAIN } from '../helpers/workload-issuer-fake.js';

const root = process.getuid?.() === 0;
const UID_WORKLOAD = 41061;
const UID_ATTACKER = 41062;
const UID_EXEC = 41063;
const PYTHON = '/usr/bin/python3.11';

const resolveModule = createRequire(import.meta.url).resolve;
const grpcUrl = pathToFileURL(resolveModule('@grpc/grpc-js')).href;
const loaderUrl = pathToFileURL(resolveModule('@grpc/proto-loader')).href;

/** A workload: FetchX509SVID; prints {spiffe_ids} for each message, or {error}. `stay`: keep the stream open. */
const FETCH = `
const grpc = await import(${JSON.stringify(grpcUrl)});
const loader = await import(${JSON.stringify(loaderUrl)});
const [socket, proto, mode] = process.argv.slice(2);
const pkg = grpc.loadPackageDefinition(loader.loadSync(proto, ${JSON.stringify(PROTO_OPTIONS)}));
const client = new pkg.SpiffeWorkloadAPI('unix://' + socket, grpc.credentials.createInsecure());
const md = new grpc.Metadata(); md.set('workload.spiffe.io', 'true');
const s = client.FetchX509SVID({}, md, mode === 'stay' ? {} : { deadline: Date.now() + 5000 });
s.on('data', (m) => { console.log(JSON.stringify({ spiffe_ids: m.svids.map((x) => x.spiffe_id) })); if (mode !== 'stay') process.exit(0); });
s.once('error', (e) => { console.log(JSON.stringify({ error: e.code, details: e.details })); process.exit(0); });
`;

/** Attacker: open N connections and say 'ready' once all connected; then report how many the agent closed, when it closed all or after 5 s. */
const HOLD = `
import net from 'node:net';
const [socket, n] = process.argv.slice(2);
let open = 0, closed = 0, done = false;
const t0 = Date.now();
const report = () => { if (done) return; done = true; console.log(JSON.stringify({ closed, ms: Date.now() - t0 })); process.exit(0); };
for (let i = 0; i < Number(n); i++) {
  const c = net.connect(socket);
  c.on('error', () => {});
  c.resume(); // read (and drop) the server's HTTP/2 settings, or the agent's close is never seen
  c.once('connect', () => { if (++open === Number(n)) console.log('ready'); });
  c.once('close', () => { if (++closed === Number(n)) report(); });
}
process.stdin.once('data', () => setTimeout(report, 5000));
`;

/**
 * Attacker: raw HTTP/2 over one connection, one FetchJWTSVID (refused: no entry), then wait for
 * the agent to close the connection; prints {status, closed, ms}.
 */
const REFUSED = `
import net from 'node:net';
import http2 from 'node:http2';
const [socket] = process.argv.slice(2);
const sock = net.connect(socket);
let closedAt;
sock.once('close', () => { closedAt = Date.now(); });
const session = http2.connect('http://localhost', { createConnection: () => sock });
session.on('error', () => {});
const req = session.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchJWTSVID',
  'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
let status, answeredAt;
req.on('response', (h) => { if (h['grpc-status'] !== undefined) { status = h['grpc-status']; answeredAt = Date.now(); } });
req.on('trailers', (h) => { status = h['grpc-status']; answeredAt = Date.now(); });
req.on('error', () => {});
// FetchJWTSVIDRequest { audience: ["x"] }: field 1, length 1, "x".
req.end(Buffer.from([0, 0, 0, 0, 3, 0x0a, 0x01, 0x78]));
const t = setInterval(() => {
  if (closedAt !== undefined || Date.now() - start > 5000) {
    clearInterval(t);
    console.log(JSON.stringify({ status, closed: closedAt !== undefined, ms: closedAt !== undefined && answeredAt ? closedAt - answeredAt : null }));
    process.exit(0);
  }
}, 20);
const start = Date.now();
`;

/** Attacker: N FetchJWTSVID calls at once, `rounds` times; prints 'done'. */
const HAMMER = `
const grpc = await import(${JSON.stringify(grpcUrl)});
const loader = await import(${JSON.stringify(loaderUrl)});
const [socket, proto, n, rounds] = process.argv.slice(2);
const pkg = grpc.loadPackageDefinition(loader.loadSync(proto, ${JSON.stringify(PROTO_OPTIONS)}));
const client = new pkg.SpiffeWorkloadAPI('unix://' + socket, grpc.credentials.createInsecure());
const md = new grpc.Metadata(); md.set('workload.spiffe.io', 'true');
const codes = {};
const one = () => new Promise((r) => client.FetchJWTSVID({ audience: ['x'] }, md, (e) => { codes[e ? e.code : 0] = (codes[e ? e.code : 0] ?? 0) + 1; r(); }));
for (let i = 0; i < Number(rounds); i++) await Promise.all(Array.from({ length: Number(n) }, one));
console.log(JSON.stringify({ codes }));
process.exit(0);
`;

/**
 * Connect as python3, prove the connection works (FetchJWTBundles: the python entry), then
 * exec /usr/bin/sleep (same pid, same start time) while a child keeps the connection and asks
 * FetchX509SVID over it: the sleep entry must not be served.
 */
const CONNECT_THEN_EXEC = `
import os, socket, subprocess, sys
path, node, child = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
r, w = os.pipe()
subprocess.Popen([node, child, str(s.fileno()), str(w), str(os.getpid())], pass_fds=(s.fileno(), w), stdout=sys.stdout)
os.close(w)
os.read(r, 1)          # the child's first call was answered: the agent has accepted the connection
os.execv('/usr/bin/sleep', ['sleep', '10'])
`;

const EXEC_CHILD = `
import fs from 'node:fs';
import net from 'node:net';
import http2 from 'node:http2';
const [fd, w, ppid] = process.argv.slice(2).map(Number);
const sock = new net.Socket({ fd, readable: true, writable: true });
const session = http2.connect('http://localhost', { createConnection: () => sock });
const call = (path) => new Promise((resolve) => {
  const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
  let status, details;
  const head = (h) => { if (h['grpc-status'] !== undefined) { status = h['grpc-status']; details = decodeURIComponent(h['grpc-message'] ?? ''); } };
  req.on('response', head); req.on('trailers', head);
  // A stream's first message is the answer (then the stream is cancelled); a refusal ends it.
  req.on('data', (d) => { resolve({ body: d.toString('latin1') }); req.close(http2.constants.NGHTTP2_CANCEL); });
  req.on('end', () => resolve({ status, details, body: '' }));
  req.end(Buffer.from([0, 0, 0, 0, 0]));
});
const first = await call('/SpiffeWorkloadAPI/FetchX509SVID');
fs.writeSync(w, 'x');
for (let i = 0; i < 500 && fs.readlinkSync('/proc/' + ppid + '/exe') !== '/usr/bin/sleep'; i++) await new Promise((r) => setTimeout(r, 10));
const exe = fs.readlinkSync('/proc/' + ppid + '/exe');
const after = await Promise.race([call('/SpiffeWorkloadAPI/FetchX509SVID'), new Promise((r) => setTimeout(() => r({ status: 'none' }), 3000))]);
console.log(JSON.stringify({ first: first.body.includes('spiffe://${TRUST_DOMAIN}/python'), parentExe: exe, status: after.status, details: after.details,
  gotSleeperSvid: (after.body ?? '').includes('spiffe://${TRUST_DOMAIN}/sleeper') }));
process.exit(0);
`;

function run(script: string, args: string[], uid: number, opts: { stdin?: boolean; exe?: string } = {}): ChildProcess {
  return spawn(opts.exe ?? process.execPath, [script, ...args], {
    uid,
    gid: uid,
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
}

/** The child's next stdout line that `pred` accepts (rejects when it exits first or after `ms`). */
function line(p: ChildProcess, pred: (l: string) => boolean = () => true, ms = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`no line in ${ms} ms; stderr: ${err}`)), ms);
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const onData = (d: Buffer): void => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (pred(l)) {
          clearTimeout(t);
          p.stdout!.off('data', onData);
          resolve(l);
          return;
        }
      }
    };
    p.stdout!.on('data', onData);
    p.once('exit', () =>
      setImmediate(() => {
        clearTimeout(t);
        reject(new Error(`child exited without the line; stderr: ${err}`));
      }),
    );
  });
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.runIf(root && process.platform === 'linux')('Workload API against local users', () => {
  let dir: string;
  const kids: ChildProcess[] = [];
  const servers: Array<{ server: WorkloadApiServer; state: AgentState }> = [];
  const script = (name: string): string => join(dir, name);
  const spawnKid = (...a: Parameters<typeof run>): ChildProcess => {
    const p = run(...a);
    kids.push(p);
    return p;
  };

  async function start(
    name: string,
    entries: ReturnType<typeof entry>[],
    o: { limits?: Partial<ListenerLimits>; sha256MaxBytes?: number; log?: Logger } = {},
  ): Promise<{ server: WorkloadApiServer; socket: string; issuer: FakeWorkloadIssuer }> {
    const issuer = new FakeWorkloadIssuer();
    issuer.entries = entries;
    const state = openAgentState(join(dir, `data-${name}`));
    const socket = join(dir, `${name}.sock`);
    const server = new WorkloadApiServer({
      socket,
      port: issuer,
      store: state.workloads,
      log: o.log ?? silentLogger(),
      limits: o.limits,
      ...(o.sha256MaxBytes ? { sha256MaxBytes: o.sha256MaxBytes } : {}),
    });
    servers.push({ server, state });
    await server.identities.sync();
    await server.start();
    return { server, socket, issuer };
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sigil-wl-local-'));
    chmodSync(dir, 0o755);
    for (const [name, text] of Object.entries({
      'fetch.mjs': FETCH,
      'hold.mjs': HOLD,
      'refused.mjs': REFUSED,
      'hammer.mjs': HAMMER,
      'exec.py': CONNECT_THEN_EXEC,
      'exec-child.mjs': EXEC_CHILD,
    }))
      writeFileSync(join(dir, name), text, { mode: 0o644 });
  });
  afterAll(async () => {
    for (const k of kids) k.kill('SIGKILL');
    for (const { server, state } of servers) {
      await server.close();
      state.close();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const legit = `spiffe://${TRUST_DOMAIN}/legit`;

  it('a uid that opens as many connections as the global cap does not lock a registered workload out (per-uid limit)', async () => {
    // The global cap is made small so that one attacker can reach it quickly; the per-uid share is 8.
    const { server, socket } = await start('conn', [entry('legit', [`unix:uid:${UID_WORKLOAD}`])], {
      limits: { maxConnections: 64, maxConnectionsPerUid: 8 },
    });
    const hold = spawnKid(script('hold.mjs'), [socket, '64'], UID_ATTACKER);
    expect(await line(hold)).toBe('ready');
    // Every one of the attacker's connections has been accepted (and held, or closed at once).
    await until(() => server.listener.connections + server.listener.refusedConnections >= 64);
    const w = spawnKid(script('fetch.mjs'), [socket, WORKLOAD_PROTO], UID_WORKLOAD);
    expect(JSON.parse(await line(w))).toEqual({ spiffe_ids: [legit] });
    expect(server.listener.refusedConnections).toBeGreaterThanOrEqual(56);
  });

  it('connections with nothing in flight are closed after the idle timeout; an entitled stream is not', async () => {
    const { server, socket, issuer } = await start('idle', [entry('legit', [`unix:uid:${UID_WORKLOAD}`])], {
      limits: { idleTimeoutMs: 300 },
    });
    const stream = spawnKid(script('fetch.mjs'), [socket, WORKLOAD_PROTO, 'stay'], UID_WORKLOAD);
    expect(JSON.parse(await line(stream))).toEqual({ spiffe_ids: [legit] });
    const hold = spawnKid(script('hold.mjs'), [socket, '4'], UID_ATTACKER, { stdin: true });
    expect(await line(hold)).toBe('ready');
    hold.stdin!.write('go\n');
    const held = JSON.parse(await line(hold)) as { closed: number; ms: number };
    expect(held.closed).toBe(4);
    // The stream outlived several idle timeouts: it still gets what changes.
    issuer.entries = [...issuer.entries, entry('legit2', [`unix:uid:${UID_WORKLOAD}`])];
    await server.identities.sync({ force: true });
    expect(JSON.parse(await line(stream))).toEqual({ spiffe_ids: [legit, `spiffe://${TRUST_DOMAIN}/legit2`] });
  });

  it('the connection of a caller that matches no entry is closed soon after its refused call', async () => {
    await start('refused', [entry('legit', [`unix:uid:${UID_WORKLOAD}`])], {
      limits: { idleTimeoutMs: 60_000, refusedIdleMs: 200 },
    });
    const r = spawnKid(script('refused.mjs'), [join(dir, 'refused.sock')], UID_ATTACKER);
    const out = JSON.parse(await line(r)) as { status: string; closed: boolean; ms: number };
    expect(out.status).toBe('7'); // PERMISSION_DENIED
    expect(out.closed).toBe(true);
    expect(out.ms).toBeLessThan(3000);
  });

  describe('unix:sha256 (sha256_max_bytes 100 MiB, callers running the ~100 MB node binary)', () => {
    const nodeSha = createHash('sha256').update(readFileSync(process.execPath)).digest('hex');

    it('a caller who could match no entry using unix:sha256 never has its executable hashed', async () => {
      const { server, socket } = await start(
        'sha-lazy',
        [
          entry('legit', [`unix:uid:${UID_WORKLOAD}`]),
          entry('pinned', [`unix:uid:${UID_WORKLOAD}`, `unix:sha256:${nodeSha}`]),
        ],
        { sha256MaxBytes: 104_857_600 },
      );
      const h = spawnKid(script('hammer.mjs'), [socket, WORKLOAD_PROTO, '16', '2'], UID_ATTACKER);
      expect(JSON.parse(await line(h))).toEqual({ codes: { 7: 32 } });
      expect(server.callers.hasher.stats.hashed).toBe(0);
      // The workload the sha256 entry is for gets it (so its executable was hashed, once).
      const w = spawnKid(script('fetch.mjs'), [socket, WORKLOAD_PROTO], UID_WORKLOAD);
      expect(JSON.parse(await line(w))).toEqual({ spiffe_ids: [legit, `spiffe://${TRUST_DOMAIN}/pinned`] });
      expect(server.callers.hasher.stats.hashed).toBe(1);
    });

    it('an executable is hashed once however often its callers ask, and the event loop turns while it is hashed', async () => {
      // An entry with the attacker's uid and another executable's hash: every attacker call needs its hash.
      const { server, socket } = await start(
        'sha-cache',
        [entry('other', [`unix:uid:${UID_ATTACKER}`, `unix:sha256:${'0'.repeat(64)}`])],
        { sha256MaxBytes: 104_857_600 },
      );
      let turns = 0;
      let ticking = true;
      const tick = (): void => {
        turns++;
        if (ticking) setImmediate(tick);
      };
      setImmediate(tick);
      const during: number[] = [];
      server.callers.hasher.observer = (ev) => during.push(turns * (ev === 'start' ? -1 : 1));
      try {
        const h = spawnKid(script('hammer.mjs'), [socket, WORKLOAD_PROTO, '16', '3'], UID_ATTACKER);
        expect(JSON.parse(await line(h))).toEqual({ codes: { 7: 48 } });
      } finally {
        ticking = false;
      }
      expect(server.callers.hasher.stats).toEqual({ hashed: 1, cached: 47 });
      // [-turns at start, turns at end]: ~100 chunks of 1 MiB, each in its own turn of the loop.
      expect(during).toHaveLength(2);
      expect(during[0]! + during[1]!).toBeGreaterThan(20);
    });
  });

  it('a process that connected as python3 and exec’d /usr/bin/sleep does not get the sleep entry (executable pinned at accept)', async () => {
    const lines: string[] = [];
    const log = createLogger({ name: 't', level: 'warn', pretty: false, destination: { write: (l) => lines.push(l) } });
    const { socket } = await start(
      'exec',
      [
        entry('python', [`unix:uid:${UID_EXEC}`, `unix:path:${PYTHON}`]),
        entry('sleeper', [`unix:uid:${UID_EXEC}`, 'unix:path:/usr/bin/sleep']),
      ],
      { log },
    );
    const p = spawnKid(script('exec.py'), [socket, process.execPath, script('exec-child.mjs')], UID_EXEC, {
      exe: PYTHON,
    });
    const out = JSON.parse(await line(p)) as Record<string, unknown>;
    // The connection was attested as python3 (its entry served), then the parent really ran sleep.
    expect(out).toMatchObject({ first: true, parentExe: '/usr/bin/sleep', gotSleeperSvid: false, status: '7' });
    expect(out['details']).toMatch(
      /no longer runs the executable it ran when it connected.*the executable check failed/,
    );
    const warn = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['uid'] === UID_EXEC);
    expect(warn).toMatchObject({ code: 'unauthorized', msg: 'workload API: caller attestation failed; call refused' });
    expect(String(warn!['check'])).toContain('the executable check failed');
  });
});
