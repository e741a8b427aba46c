/**
 * SO_PEERCRED for real (native/peer-credentials.ts): a net.Server on a Unix socket in a temp dir,
 * peers in other processes and in this one, and what the server reads must be what the kernel
 * knows of the peer — the Workload API (#17) identifies workloads by it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NativeError } from '../../../native/errors.js';
import { PeerCredentialReader, type PeerCredentials } from '../../../native/peer-credentials.js';

const linux = process.platform === 'linux';

/** Resolvers for what a child peer wrote about itself, by its pid (the server hands the body over). */
const pending = new Map<number, (self: PeerCredentials) => void>();

/** A child node process that connects to `path` and prints what it knows of itself. */
function childPeer(
  path: string,
  ids: { uid?: number; gid?: number } = {},
): { pid: number; self: Promise<PeerCredentials> } {
  const script = `const s = require('node:net').connect(process.argv[1], () => s.end(JSON.stringify({ pid: process.pid, uid: process.getuid(), gid: process.getgid() })));`;
  const child = spawn(process.execPath, ['-e', script, path], { stdio: ['ignore', 'ignore', 'pipe'], ...ids });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const self = new Promise<PeerCredentials>((resolve, reject) => {
    child.on('exit', (code) => (code === 0 ? undefined : reject(new Error(`child exited ${code}: ${err}`))));
    pending.set(child.pid!, resolve);
  });
  return { pid: child.pid!, self };
}

describe.runIf(linux)('peer credentials of a Unix socket (SO_PEERCRED)', () => {
  let dir: string;
  let path: string;
  let server: Server;
  const reader = linux ? PeerCredentialReader.open() : undefined;
  const seen: Array<{ kernel: PeerCredentials | Error; socket: Socket }> = [];
  const connected: Array<(s: { kernel: PeerCredentials | Error; socket: Socket }) => void> = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sigil-peercred-'));
    path = join(dir, 'workload.sock');
    server = createServer((socket) => {
      let kernel: PeerCredentials | Error;
      try {
        kernel = reader!.read(socket);
      } catch (e) {
        kernel = e as Error;
      }
      const entry = { kernel, socket };
      seen.push(entry);
      let body = '';
      socket.on('data', (d) => (body += d.toString()));
      socket.on('end', () => {
        socket.end();
        if (!(kernel instanceof Error) && body) pending.get(kernel.pid)?.(JSON.parse(body) as PeerCredentials);
      });
      connected.shift()?.(entry);
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    await chmod(dir, 0o755);
    await chmod(path, 0o777); // a peer under another uid may connect
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('a child process: the pid/uid/gid the server reads are the child’s own', async () => {
    const child = childPeer(path);
    const self = await child.self;
    const kernel = seen.find((s) => !(s.kernel instanceof Error) && s.kernel.pid === child.pid)!
      .kernel as PeerCredentials;
    expect(kernel).toEqual({ pid: child.pid, uid: process.getuid!(), gid: process.getgid!() });
    expect(self).toEqual(kernel);
    expect(kernel.pid).not.toBe(process.pid);
  });

  it.runIf(process.getuid?.() === 0)(
    'a child running as another user (nobody): its uid and gid, not ours',
    async () => {
      const child = childPeer(path, { uid: 65534, gid: 65534 });
      const self = await child.self;
      expect(self).toEqual({ pid: child.pid, uid: 65534, gid: 65534 });
      const kernel = seen.find((s) => !(s.kernel instanceof Error) && s.kernel.pid === child.pid)!.kernel;
      expect(kernel).toEqual(self);
    },
  );

  it('this process as the client: both ends read this process', async () => {
    const accepted = new Promise<{ kernel: PeerCredentials | Error; socket: Socket }>((resolve) =>
      connected.push(resolve),
    );
    const client = connect(path);
    await new Promise<void>((resolve) => client.once('connect', resolve));
    try {
      const me = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
      expect((await accepted).kernel).toEqual(me);
      expect(reader!.read(client)).toEqual(me); // the client's peer is the server: this process too
    } finally {
      client.destroy();
    }
  });

  it('a TCP socket is refused, not read (its SO_PEERCRED answer names no process)', async () => {
    const tcp = createServer((s) => s.destroy());
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    const port = (tcp.address() as { port: number }).port;
    const client = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => client.once('connect', resolve));
    try {
      expect(() => reader!.read(client)).toThrow(
        expect.objectContaining({ failure: 'call_failed', message: expect.stringContaining('Unix-domain socket') }),
      );
    } finally {
      client.destroy();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    }
  });

  it('a closed socket is refused', async () => {
    const client = connect(path);
    await new Promise<void>((resolve) => client.once('connect', resolve));
    client.destroy();
    expect(() => reader!.read(client)).toThrow(NativeError);
  });
});

describe('where SO_PEERCRED does not exist', () => {
  it('off Linux, and on a CPU family whose constants are not known: unsupported_platform', () => {
    expect(() => PeerCredentialReader.open('darwin')).toThrow(
      expect.objectContaining({ failure: 'unsupported_platform', message: expect.stringContaining('only on Linux') }),
    );
    expect(() => PeerCredentialReader.open('linux', 'mips')).toThrow(
      expect.objectContaining({ failure: 'unsupported_platform', message: expect.stringContaining('mips') }),
    );
  });
});
