/**
 * Workload attestation across users (issue #17): child processes under other uids (spawned with
 * `uid`/`gid`, so this test needs root) connect to the agent's Workload API. What they get must
 * follow from the uid the KERNEL reports for their connection: the matching uid gets its own
 * SPIFFE ID, a non-matching one PermissionDenied; and two workloads under different uids
 * complete mutual TLS with the SVIDs they were served, each checking the other's SPIFFE ID.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openAgentState, type AgentState } from '../../src/agent/state/index.js';
import { PROTO_OPTIONS, WORKLOAD_PROTO } from '../../src/agent/workload/protos.js';
import { WorkloadApiServer } from '../../src/agent/workload/server.js';
import { silentLogger } from '../../src/util/log.js';
import { entry, FakeWorkloadIssuer, TRUST_DOMAIN } from '../helpers/workload-issuer-fake.js';

const root = process.getuid?.() === 0;
const UID_A = 41001;
const UID_B = 41002;
const UID_NONE = 41003;

const resolveModule = createRequire(import.meta.url).resolve;
const grpcUrl = pathToFileURL(resolveModule('@grpc/grpc-js')).href;
const loaderUrl = pathToFileURL(resolveModule('@grpc/proto-loader')).href;

/**
 * The child: fetch its X.509-SVID over the Workload API, then (mode server|client) do mutual TLS
 * with it, checking the peer's SPIFFE ID. Prints one JSON line per event.
 */
const CHILD = `
import tls from 'node:tls';
import { X509Certificate, createPrivateKey } from 'node:crypto';
const grpc = await import(${JSON.stringify(grpcUrl)});
const loader = await import(${JSON.stringify(loaderUrl)});
const [socket, proto, mode, peerId, port] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const pkg = grpc.loadPackageDefinition(loader.loadSync(proto, ${JSON.stringify(PROTO_OPTIONS)}));
const client = new pkg.SpiffeWorkloadAPI('unix://' + socket, grpc.credentials.createInsecure());
const md = new grpc.Metadata(); md.set('workload.spiffe.io', 'true');
const split = (buf) => { const out = []; let i = 0; while (i < buf.length) { let len = buf[i + 1], h = 2;
  if (len & 0x80) { const n = len & 0x7f; len = [...buf.subarray(i + 2, i + 2 + n)].reduce((a, b) => a * 256 + b, 0); h = 2 + n; }
  out.push(buf.subarray(i, i + h + len)); i += h + len; } return out; };
const pem = (d) => new X509Certificate(d).toString();
const svid = await new Promise((resolve) => {
  const s = client.FetchX509SVID({}, md);
  s.once('data', (m) => { resolve(m.svids[0]); s.cancel(); });
  s.once('error', (e) => { if (e.code !== 1) { say({ error: e.code, details: e.details }); process.exit(0); } });
});
say({ uid: process.getuid(), spiffe_id: svid.spiffe_id });
if (mode === 'fetch') process.exit(0);
const ctx = {
  cert: split(svid.x509_svid).map(pem).join(''),
  key: createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }),
  ca: split(svid.bundle).map(pem),
};
const sanOf = (c) => c && c.subjectaltname;
if (mode === 'server') {
  const srv = tls.createServer({ ...ctx, requestCert: true, rejectUnauthorized: true }, (sock) => {
    say({ peer: sanOf(sock.getPeerCertificate()), ok: sanOf(sock.getPeerCertificate()) === 'URI:' + peerId });
    sock.end('hi'); srv.close();
  });
  srv.listen(0, '127.0.0.1', () => say({ port: srv.address().port }));
} else {
  const sock = tls.connect({ ...ctx, host: '127.0.0.1', port: Number(port),
    // SPIFFE authentication: the peer's SPIFFE ID, not a host name (X509-SVID §5).
    checkServerIdentity: (_h, cert) => sanOf(cert) === 'URI:' + peerId ? undefined : new Error('wrong SPIFFE ID ' + sanOf(cert)) },
    () => { say({ peer: sanOf(sock.getPeerCertificate()), ok: sanOf(sock.getPeerCertificate()) === 'URI:' + peerId }); sock.end(); });
  sock.on('error', (e) => say({ error: e.message }));
}
`;

interface ChildLine {
  uid?: number;
  spiffe_id?: string;
  error?: number | string;
  details?: string;
  port?: number;
  peer?: string;
  ok?: boolean;
}

function child(
  script: string,
  args: string[],
  uid: number,
): { lines: ChildLine[]; line: (pred: (l: ChildLine) => boolean) => Promise<ChildLine>; done: Promise<number> } {
  const p = spawn(process.execPath, [script, ...args], { uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: ChildLine[] = [];
  const waiters: Array<{ pred: (l: ChildLine) => boolean; resolve: (l: ChildLine) => void }> = [];
  let buf = '';
  let err = '';
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  p.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const l = JSON.parse(buf.slice(0, i)) as ChildLine;
      buf = buf.slice(i + 1);
      lines.push(l);
      for (const w of waiters.filter((w) => w.pred(l))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  });
  const done = new Promise<number>((resolve) => p.on('exit', (code) => resolve(code ?? -1)));
  const checked = done.then((c) => {
    if (c !== 0) throw new Error(`child exited ${c}: ${err}`);
    return c;
  });
  checked.catch(() => undefined); // reported where a test awaits it
  return {
    lines,
    done: checked,
    line: (pred) =>
      new Promise((resolve, reject) => {
        const seen = lines.find(pred);
        if (seen) return resolve(seen);
        waiters.push({ pred, resolve });
        void done.then(() => setImmediate(() => reject(new Error(`child ended without the line; stderr: ${err}`))));
      }),
  };
}

describe.runIf(root && process.platform === 'linux')('Workload API: callers under different uids', () => {
  let dir: string;
  let socket: string;
  let script: string;
  let state: AgentState;
  let server: WorkloadApiServer;
  const issuer = new FakeWorkloadIssuer();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sigil-wl-uid-'));
    chmodSync(dir, 0o755);
    socket = join(dir, 'agent.sock');
    script = join(dir, 'child.mjs');
    writeFileSync(script, CHILD, { mode: 0o644 });
    issuer.entries = [entry('a', [`unix:uid:${UID_A}`]), entry('b', [`unix:uid:${UID_B}`, `unix:gid:${UID_B}`])];
    state = openAgentState(join(dir, 'data'));
    server = new WorkloadApiServer({ socket, port: issuer, store: state.workloads, log: silentLogger() });
    await server.identities.sync();
    await server.start();
  });
  afterAll(async () => {
    await server?.close();
    state?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the uid the kernel reports decides: uid A gets A’s SPIFFE ID, a uid without an entry PermissionDenied', async () => {
    const a = child(script, [socket, WORKLOAD_PROTO, 'fetch'], UID_A);
    const none = child(script, [socket, WORKLOAD_PROTO, 'fetch'], UID_NONE);
    expect(await a.line((l) => l.spiffe_id !== undefined || l.error !== undefined)).toEqual({
      uid: UID_A,
      spiffe_id: `spiffe://${TRUST_DOMAIN}/a`,
    });
    const refused = await none.line((l) => l.error !== undefined);
    expect(refused.error).toBe(7); // PERMISSION_DENIED
    expect(refused.details).toContain(`unix:uid:${UID_NONE}`);
    await Promise.all([a.done, none.done]);
  });

  it('two workloads under different uids complete mutual TLS, each checking the other’s SPIFFE ID', async () => {
    const idA = `spiffe://${TRUST_DOMAIN}/a`;
    const idB = `spiffe://${TRUST_DOMAIN}/b`;
    const srv = child(script, [socket, WORKLOAD_PROTO, 'server', idB], UID_A);
    const { port } = await srv.line((l) => l.port !== undefined || l.error !== undefined);
    expect(port).toBeGreaterThan(0);
    const cli = child(script, [socket, WORKLOAD_PROTO, 'client', idA, String(port)], UID_B);
    expect(await cli.line((l) => l.peer !== undefined || l.error !== undefined)).toEqual({
      peer: `URI:${idA}`,
      ok: true,
    });
    expect(await srv.line((l) => l.peer !== undefined)).toEqual({ peer: `URI:${idB}`, ok: true });
    expect(srv.lines.find((l) => l.spiffe_id)?.spiffe_id).toBe(idA);
    expect(cli.lines.find((l) => l.spiffe_id)?.spiffe_id).toBe(idB);
    await Promise.all([srv.done, cli.done]);
  });

  it('a workload under uid B cannot complete mutual TLS posing as A: the server refuses B’s SPIFFE ID', async () => {
    const idA = `spiffe://${TRUST_DOMAIN}/a`;
    // The server (uid A) expects a client with A's ID; B presents its own, the only one it was served.
    const srv = child(script, [socket, WORKLOAD_PROTO, 'server', idA], UID_A);
    const { port } = await srv.line((l) => l.port !== undefined);
    const cli = child(script, [socket, WORKLOAD_PROTO, 'client', idA, String(port)], UID_B);
    expect(await srv.line((l) => l.peer !== undefined)).toEqual({ peer: `URI:spiffe://${TRUST_DOMAIN}/b`, ok: false });
    await Promise.all([srv.done, cli.done]);
  });
});
