/**
 * The Workload API checked by clients written independently of the agent (issue #17: "a held-out
 * client written independently of this project will be run against the socket"). The agent's own
 * conformance suite (test/integration/workload-api.test.ts) builds its client from the agent's
 * .proto files, so a wrong field number, method name or service path would be wrong on both
 * sides and pass. Here:
 * - test/helpers/workload-raw-client.ts: node:http2 + hand-written protobuf, field numbers from
 *   the SPIFFE standard, no grpc-js, no proto-loader, no .proto file of this project;
 * - test/helpers/workload-client-py.py: Debian's python3-grpcio (gRPC's C core) with message
 *   types built at run time from descriptors written from the standard.
 * Both run against the socket of the built `sigil agent run` daemon, joined to a real issuer;
 * what they are given is checked with openssl, not with the project's PKI code.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyResources, createToken, RESOURCES, SIGIL, writeAgentConfig } from '../helpers/cli.js';
import { useIssuer } from '../helpers/issuer-fixture.js';
import {
  decodeDiscoveryResponse,
  decodeJwtBundlesResponse,
  decodeJwtSvidResponse,
  decodeValidateResponse,
  decodeX509BundlesResponse,
  decodeX509SvidResponse,
  encodeDiscoveryRequest,
  encodeJwtSvidRequest,
  encodeValidateRequest,
  GRPC,
  rawCall,
  SDS_SERVICE,
  SECRET_TYPE,
  type RawX509SvidResponse,
} from '../helpers/workload-raw-client.js';

const UID = process.getuid?.() ?? 0;
const OTHER_UID = 41017;
const PYTHON = '/usr/bin/python3';
const PY_CLIENT = resolve(import.meta.dirname, '..', 'helpers', 'workload-client-py.py');
const hasPythonGrpc =
  existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' }).status === 0;
const TD = 'spiffe://example.org';
const ID = `${TD}/web`;

/** Split concatenated DER certificates by their outer SEQUENCE length (written here, not imported). */
function splitDer(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < buf.length) {
    if (buf[i] !== 0x30) throw new Error(`not a DER SEQUENCE at ${i}`);
    let len = buf[i + 1]!;
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = [...buf.subarray(i + 2, i + 2 + n)].reduce((a, b) => a * 256 + b, 0);
      hdr += n;
    }
    out.push(buf.subarray(i, i + hdr + len));
    i += hdr + len;
  }
  return out;
}

function openssl(args: string[], input?: Buffer): string {
  const r = spawnSync('openssl', args, { input });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

function pemOf(der: Buffer): string {
  return openssl(['x509', '-inform', 'DER', '-outform', 'PEM'], der);
}

/** The SVID, its key and bundle as openssl sees them: the URI SAN, whether the key is the certificate's, whether the chain verifies. */
function checkWithOpenssl(
  dir: string,
  svid: { x509Svid: Buffer; x509SvidKey: Buffer; bundle: Buffer },
): {
  text: string;
  keyMatches: boolean;
  verify: string;
} {
  const chain = splitDer(svid.x509Svid);
  const text = openssl(['x509', '-inform', 'DER', '-noout', '-text'], chain[0]!);
  const certPub = openssl(['x509', '-inform', 'DER', '-noout', '-pubkey'], chain[0]!);
  const keyPub = openssl(['pkey', '-inform', 'DER', '-pubout'], svid.x509SvidKey);
  writeFileSync(join(dir, 'leaf.pem'), pemOf(chain[0]!));
  writeFileSync(join(dir, 'untrusted.pem'), chain.slice(1).map(pemOf).join(''));
  writeFileSync(join(dir, 'bundle.pem'), splitDer(svid.bundle).map(pemOf).join(''));
  const verify = openssl([
    'verify',
    '-CAfile',
    join(dir, 'bundle.pem'),
    ...(chain.length > 1 ? ['-untrusted', join(dir, 'untrusted.pem')] : []),
    join(dir, 'leaf.pem'),
  ]);
  return { text, keyMatches: certPub === keyPub, verify };
}

function daemon(config: string): { proc: ChildProcess; log: () => string } {
  const proc = spawn(process.execPath, [SIGIL, 'agent', 'run', '--config', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
  });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  return { proc, log: () => log };
}

function runPython(args: string[], opts: { uid?: number; gid?: number } = {}): Promise<Record<string, any>> {
  return new Promise((res, rej) => {
    const p = spawn(PYTHON, [PY_CLIENT, ...args], { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) =>
      code === 0 ? res(JSON.parse(out)) : rej(new Error(`python client exited ${code}: ${err}`)),
    );
  });
}

describe.runIf(process.platform === 'linux')('Workload API against independent clients', () => {
  const fx = useIssuer();
  let socket: string;
  let agent: { proc: ChildProcess; log: () => string };
  let first: RawX509SvidResponse;

  beforeAll(async () => {
    await applyResources(
      fx.issuer,
      fx.tmp.path,
      `${RESOURCES}---
kind: workload
name: web
spec:
  spiffe_id: ${ID}
  selectors: [unix:uid:${UID}]
  nodes: { bots: [gw] }
  jwt_audiences: [aud-a]
`,
    );
    // Reachable by the child under another uid (mkdtemp makes the directory 0700).
    chmodSync(fx.tmp.path, 0o755);
    mkdirSync(join(fx.tmp.path, 'run'), { mode: 0o755 });
    socket = join(fx.tmp.path, 'run', 'agent.sock');
    const a = writeAgentConfig(fx.tmp.path, 'edge', {
      url: fx.issuer.url,
      pin: fx.issuer.pin,
      token: await createToken(fx.issuer),
      extra: `workload_api: { socket: ${socket} }\n`,
    });
    // A fresh daemon, not joined yet: the workload sync must follow the join at once (not the
    // retry backoff of its first, pre-join attempt) for the SVID to come within the wait below.
    agent = daemon(a.config);
    const end = Date.now() + 30_000;
    for (;;) {
      const r = await rawCall(socket, 'FetchX509SVID', Buffer.alloc(0), { maxMessages: 1 }).catch(() => undefined);
      if (r?.messages.length) {
        first = decodeX509SvidResponse(r.messages[0]!);
        break;
      }
      if (Date.now() > end) throw new Error(`no SVID on the socket after 30 s: ${agent.log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }, 60_000);

  afterAll(async () => {
    if (agent && agent.proc.exitCode === null) {
      const exited = new Promise((r) => agent.proc.once('exit', r));
      agent.proc.kill('SIGTERM');
      await exited;
    }
  });

  it('the daemon woke the workload sync when it joined (not at the retry of its pre-join attempt)', () => {
    const lines = agent.log().split('\n');
    const joined = lines.findIndex((l) => l.includes('"msg":"joined"'));
    const woken = lines.findIndex((l) => l.includes('the agent has a new identity; syncing the workload SVIDs now'));
    const issued = lines.findIndex((l) => l.includes('workload X.509-SVID issued'));
    expect(joined).toBeGreaterThanOrEqual(0);
    expect(woken).toBeGreaterThan(joined);
    // (After the join, not necessarily after the wake-up: a pass already in flight may win.)
    expect(issued).toBeGreaterThan(joined);
  });

  it('raw HTTP/2: FetchX509SVID answers by the spec’s field numbers, and openssl accepts what it carries', () => {
    expect(first.unknown).toEqual([]);
    expect(first.svids).toHaveLength(1);
    const s = first.svids[0]!;
    expect(s.spiffeId).toBe(ID);
    const checked = checkWithOpenssl(fx.tmp.path, s);
    expect(checked.text).toContain(`URI:${ID}`);
    expect(checked.keyMatches).toBe(true);
    expect(checked.verify).toContain('leaf.pem: OK');
  });

  it('raw HTTP/2: the gRPC envelope — application/grpc, status 0 only in trailers of a finished call', async () => {
    const r = await rawCall(socket, 'FetchJWTSVID', encodeJwtSvidRequest(['aud-a']));
    expect(r.httpStatus).toBe(200);
    expect(r.contentType).toMatch(/^application\/grpc/);
    expect(r.grpcStatus).toBe(GRPC.OK);
    expect(r.statusIn).toBe('trailers');
    expect(r.messages).toHaveLength(1);
  });

  it('raw HTTP/2: FetchX509Bundles (crl = 1, bundles = 2) carries the same roots as the SVID', async () => {
    const r = await rawCall(socket, 'FetchX509Bundles', Buffer.alloc(0), { maxMessages: 1 });
    const b = decodeX509BundlesResponse(r.messages[0]!);
    expect(b.unknown).toEqual([]);
    expect(Object.keys(b.bundles)).toEqual([TD]);
    expect(b.bundles[TD]!.equals(first.svids[0]!.bundle)).toBe(true);
  });

  it('raw HTTP/2: FetchJWTSVID, ValidateJWTSVID (claims as a google.protobuf.Struct) and FetchJWTBundles', async () => {
    const j = decodeJwtSvidResponse(
      (await rawCall(socket, 'FetchJWTSVID', encodeJwtSvidRequest(['aud-a']))).messages[0]!,
    );
    expect(j.unknown).toEqual([]);
    expect(j.svids.map((s) => s.spiffeId)).toEqual([ID]);
    const token = j.svids[0]!.svid;
    expect(token.split('.')).toHaveLength(3);

    const v = await rawCall(socket, 'ValidateJWTSVID', encodeValidateRequest('aud-a', token));
    expect(v.grpcStatus).toBe(GRPC.OK);
    const vr = decodeValidateResponse(v.messages[0]!);
    expect(vr.unknown).toEqual([]);
    expect(vr.spiffeId).toBe(ID);
    expect(vr.claims['sub']).toBe(ID);
    expect([vr.claims['aud']].flat()).toContain('aud-a');
    expect(typeof vr.claims['exp']).toBe('number');

    const wrong = await rawCall(socket, 'ValidateJWTSVID', encodeValidateRequest('aud-b', token));
    expect(wrong.grpcStatus).toBe(GRPC.INVALID_ARGUMENT);
    // A workload may not ask for an audience its entry does not list (another workload's audience).
    const other = await rawCall(socket, 'FetchJWTSVID', encodeJwtSvidRequest(['aud-b']));
    expect(other.grpcStatus).toBe(GRPC.PERMISSION_DENIED);

    const jb = decodeJwtBundlesResponse(
      (await rawCall(socket, 'FetchJWTBundles', Buffer.alloc(0), { maxMessages: 1 })).messages[0]!,
    );
    expect(jb.unknown).toEqual([]);
    const jwks = JSON.parse(jb.bundles[TD]!.toString('utf8')) as { keys: Array<{ kid: string }> };
    const kid = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()) as { kid: string };
    expect(jwks.keys.map((k) => k.kid)).toContain(kid.kid);
  });

  it('raw HTTP/2: without `workload.spiffe.io: true` every RPC is InvalidArgument (grpc-status 3)', async () => {
    for (const [method, req] of [
      ['FetchX509SVID', Buffer.alloc(0)],
      ['FetchX509Bundles', Buffer.alloc(0)],
      ['FetchJWTSVID', encodeJwtSvidRequest(['aud-a'])],
      ['FetchJWTBundles', Buffer.alloc(0)],
      ['ValidateJWTSVID', encodeValidateRequest('aud-a', 'x.y.z')],
    ] as const) {
      const r = await rawCall(socket, method, req, { securityHeader: false, maxMessages: 1 });
      expect({ method, status: r.grpcStatus, messages: r.messages.length }).toEqual({
        method,
        status: GRPC.INVALID_ARGUMENT,
        messages: 0,
      });
    }
  });

  it('raw HTTP/2: a method the spec does not define, or the path with a package, is Unimplemented', async () => {
    // The service has no package (SPIFFE_Workload_API.md): /spiffe.workload.SpiffeWorkloadAPI/… is not it.
    for (const m of [
      'FetchX509SVIDs',
      '/spiffe.workload.SpiffeWorkloadAPI/FetchX509SVID',
      '/workload.SpiffeWorkloadAPI/FetchX509SVID',
    ]) {
      const r = await rawCall(socket, m, Buffer.alloc(0), { maxMessages: 1 });
      expect(r.grpcStatus).toBe(GRPC.UNIMPLEMENTED);
    }
  });

  it('raw HTTP/2: Envoy SDS FetchSecrets (Envoy’s field numbers) serves the same SVID, key and bundle', async () => {
    const r = await rawCall(
      socket,
      `${SDS_SERVICE}/FetchSecrets`,
      encodeDiscoveryRequest(['default', 'ROOTCA']),
      // Envoy sends no workload.spiffe.io header: SDS must not need it.
      { securityHeader: false },
    );
    expect(r.grpcStatus).toBe(GRPC.OK);
    const d = decodeDiscoveryResponse(r.messages[0]!);
    expect(d.unknown).toEqual([]);
    expect(d.typeUrl).toBe(SECRET_TYPE);
    expect(d.versionInfo).not.toBe('');
    expect(d.resources.every((x) => x.typeUrl === SECRET_TYPE)).toBe(true);
    const byName = new Map(d.resources.map((x) => [x.secret.name, x.secret]));
    const tls = byName.get('default')?.tlsCertificate;
    const ca = byName.get('ROOTCA')?.validationContext;
    expect(tls && ca).toBeTruthy();
    // PEM in the DataSource (what Envoy reads); openssl turns it back into the DER the Workload API served.
    const sdsLeaf = spawnSync('openssl', ['x509', '-outform', 'DER'], { input: tls!.certificateChain }).stdout;
    expect(sdsLeaf.equals(splitDer(first.svids[0]!.x509Svid)[0]!)).toBe(true);
    const certPub = openssl(['x509', '-noout', '-pubkey'], tls!.certificateChain);
    expect(openssl(['pkey', '-pubout'], tls!.privateKey)).toBe(certPub);
    const sdsRoot = spawnSync('openssl', ['x509', '-outform', 'DER'], { input: ca!.trustedCa }).stdout;
    expect(sdsRoot.equals(splitDer(first.svids[0]!.bundle)[0]!)).toBe(true);
  });

  it.runIf(hasPythonGrpc)('Python grpcio with descriptors from the spec: every RPC, the same SVID', async () => {
    const out = await runPython([socket, 'aud-a']);
    expect(out['x509_unknown_fields']).toBe(0);
    expect(out['x509'].map((s: { spiffe_id: string }) => s.spiffe_id)).toEqual([ID]);
    const s = out['x509'][0] as Record<string, string>;
    const svid = {
      x509Svid: Buffer.from(s['x509_svid']!, 'base64'),
      x509SvidKey: Buffer.from(s['x509_svid_key']!, 'base64'),
      bundle: Buffer.from(s['bundle']!, 'base64'),
    };
    expect(svid.x509Svid.equals(first.svids[0]!.x509Svid)).toBe(true);
    expect(checkWithOpenssl(fx.tmp.path, svid).keyMatches).toBe(true);
    expect(Buffer.from(out['x509_bundles'][TD], 'base64').equals(svid.bundle)).toBe(true);
    expect(out['jwt'].map((j: { spiffe_id: string }) => j.spiffe_id)).toEqual([ID]);
    expect(out['jwt_bundles'][TD].keys.length).toBeGreaterThan(0);
    expect(out['validate'].spiffe_id).toBe(ID);
    expect(out['validate'].claims.sub).toBe(ID);
    expect(out['validate_wrong_audience'].code).toBe(GRPC.INVALID_ARGUMENT);
    expect(out['no_header'].code).toBe(GRPC.INVALID_ARGUMENT);
  });

  it.runIf(hasPythonGrpc && UID === 0)(
    'Python grpcio under another uid: PermissionDenied (grpc-status 7)',
    async () => {
      const out = await runPython([socket, '--x509-only'], { uid: OTHER_UID, gid: OTHER_UID });
      expect(out['x509'].code).toBe(GRPC.PERMISSION_DENIED);
      expect(out['x509'].details).toContain(`unix:uid:${OTHER_UID}`);
    },
  );
});
