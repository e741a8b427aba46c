/**
 * The Workload API's Unix socket, and who is on the other end of each connection.
 *
 * grpc-js does not expose a connection's file descriptor to a handler, so the agent accepts
 * connections itself: a net.Server on the socket path reads SO_PEERCRED from each accepted
 * socket (native/peer-credentials.ts) and the caller's start time (/proc/<pid>/stat) at once,
 * then hands the socket to the gRPC server through its connection injector
 * (grpc.Server#createConnectionInjector). To find the connection again from a call, each socket
 * gets its own `remoteAddress` — a Unix socket has none — which grpc-js reports as the call's
 * peer (`call.getPeer()`). The name is chosen here, not by the client, so a client cannot claim
 * another connection's credentials; and the credentials are those of connect(2), read before a
 * single byte of the client's is processed.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Server as GrpcServer } from '@grpc/grpc-js';
import { ServerCredentials } from '@grpc/grpc-js';
import type { PeerCredentialReader } from '#native/peer-credentials.js';
import { SigilError } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import type { PeerIds } from './attest.js';
import { processStartTime } from './proc.js';

export interface ConnectedPeer extends PeerIds {
  /** /proc/<pid>/stat start time when the connection was accepted (undefined: the process was already gone). */
  startTime: string | undefined;
}

/** Anyone may connect (attestation decides what they get); restrict with the directory's permissions (docs). */
export const SOCKET_MODE = 0o666;
const PEER_PREFIX = 'sigil-workload-peer-';

export class WorkloadListener {
  readonly #peers = new Map<string, ConnectedPeer>();
  readonly #sockets = new Set<Socket>();
  #next = 0;
  #server: NetServer | undefined;

  constructor(
    readonly socketPath: string,
    private readonly reader: Pick<PeerCredentialReader, 'read'>,
    private readonly log: Logger,
  ) {}

  /** Listen on the socket path and feed accepted connections to `grpc`. */
  async listen(grpc: GrpcServer): Promise<void> {
    prepareSocketPath(this.socketPath);
    const injector = grpc.createConnectionInjector(ServerCredentials.createInsecure());
    const server = createServer((socket) => this.accept(socket, (s) => injector.injectConnection(s)));
    server.maxConnections = 4096;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(this.socketPath, SOCKET_MODE);
    this.#server = server;
  }

  private accept(socket: Socket, inject: (s: Socket) => void): void {
    let peer: ConnectedPeer;
    try {
      const creds = this.reader.read(socket);
      peer = { ...creds, startTime: processStartTime(creds.pid) };
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'workload API: cannot read the peer credentials; closing');
      socket.destroy();
      return;
    }
    const id = `${PEER_PREFIX}${++this.#next}`;
    // An own property shadows net.Socket's getter; grpc-js reads it through the HTTP/2 session's socket.
    Object.defineProperty(socket, 'remoteAddress', { value: id, enumerable: true });
    this.#peers.set(id, peer);
    this.#sockets.add(socket);
    socket.once('close', () => {
      this.#peers.delete(id);
      this.#sockets.delete(socket);
    });
    inject(socket);
  }

  /** The connection a call came in on (`call.getPeer()`), or undefined when it is not one of ours (or closed). */
  peerOf(callPeer: string): ConnectedPeer | undefined {
    return callPeer.startsWith(PEER_PREFIX) ? this.#peers.get(callPeer) : undefined;
  }

  get connections(): number {
    return this.#peers.size;
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      if (lstatSync(this.socketPath).isSocket()) unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }
}

/**
 * Make the socket's directory (0755) and remove a stale socket left by an earlier run — only
 * a socket: a symbolic link or a regular file at the path is refused, never followed or deleted
 * (someone could have planted it to make the agent listen, or unlink, elsewhere).
 */
function prepareSocketPath(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new SigilError('internal', `cannot stat ${path}`, { cause: e });
  }
  if (st.isSymbolicLink())
    throw new SigilError('unsafe_path', `workload_api.socket ${path} is a symbolic link; refusing to use it`);
  if (!st.isSocket())
    throw new SigilError(
      'unsafe_path',
      `workload_api.socket ${path} exists and is not a socket; refusing to replace it`,
    );
  unlinkSync(path);
}
