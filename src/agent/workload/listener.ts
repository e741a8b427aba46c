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
import {
  chmodSync,
  closeSync,
  constants as fsConstants,
  fstatSync,
  lstatSync,
  openSync,
  type Stats,
  unlinkSync,
} from 'node:fs';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Server as GrpcServer, ServerInterceptor } from '@grpc/grpc-js';
import { ServerCredentials, ServerInterceptingCall } from '@grpc/grpc-js';
import type { PeerCredentialReader } from '#native/peer-credentials.js';
import { SigilError } from '../../errors.js';
import { ensureDir } from '../../util/atomic-file.js';
import type { Logger } from '../../util/log.js';
import type { PeerIds } from './attest.js';
import { type ExeIdentity, processExeIdentity, processStartTime } from './proc.js';

export interface ConnectedPeer extends PeerIds {
  /** /proc/<pid>/stat start time when the connection was accepted (undefined: the process was already gone). */
  startTime: string | undefined;
  /** Device and inode of /proc/<pid>/exe when the connection was accepted (null: could not be read). */
  exe: ExeIdentity | null;
}

/** Anyone may connect (attestation decides what they get); restrict with the directory's permissions (docs). */
export const SOCKET_MODE = 0o666;
const PEER_PREFIX = 'sigil-workload-peer-';

/**
 * How many connections, and for how long, so that one local user cannot take the socket from
 * everyone else (docs/workload-api.md, threats). Every uid gets its own share; the global cap
 * is a backstop for many uids at once.
 */
export interface ListenerLimits {
  /** Concurrent connections of one uid (SO_PEERCRED); more are closed at once. Default 32. */
  maxConnectionsPerUid: number;
  /** Concurrent connections of everyone. Default 4096. */
  maxConnections: number;
  /** A connection with no call in flight for this long is closed (clients reconnect). Default 60 s. */
  idleTimeoutMs: number;
  /** After a call was refused its caller (attestation failed, or no entry matches), idle this long closes it. Default 1 s. */
  refusedIdleMs: number;
}

export const DEFAULT_LISTENER_LIMITS: Readonly<ListenerLimits> = {
  maxConnectionsPerUid: 32,
  maxConnections: 4096,
  idleTimeoutMs: 60_000,
  refusedIdleMs: 1_000,
};

/** The limits agent.yaml sets (`workload_api.max_connections_per_uid`); the rest keep their defaults. */
export function limitsOf(maxConnectionsPerUid: number | undefined): Partial<ListenerLimits> {
  return maxConnectionsPerUid === undefined ? {} : { maxConnectionsPerUid };
}

/** A log line per key at most once a minute, with the number of lines left out meanwhile. */
export class LogThrottle {
  readonly #last = new Map<string, { at: number; suppressed: number }>();
  constructor(private readonly intervalMs = 60_000) {}

  /** Whether to log now; `suppressed` is how many were left out since the last one. */
  take(key: string, now = Date.now()): { log: boolean; suppressed: number } {
    const l = this.#last.get(key);
    if (l && now - l.at < this.intervalMs) {
      l.suppressed++;
      return { log: false, suppressed: 0 };
    }
    if (this.#last.size >= 1024) this.#last.clear();
    this.#last.set(key, { at: now, suppressed: 0 });
    return { log: true, suppressed: l?.suppressed ?? 0 };
  }
}

interface Connection {
  readonly id: string;
  readonly socket: Socket;
  readonly peer: ConnectedPeer;
  /** Calls whose handler runs (started, no status sent yet). */
  inFlight: number;
  refused: boolean;
  timer: NodeJS.Timeout | undefined;
}

export class WorkloadListener {
  readonly #conns = new Map<string, Connection>();
  readonly #perUid = new Map<number, number>();
  readonly #throttle = new LogThrottle();
  readonly limits: ListenerLimits;
  /** Connections closed at accept because their uid held its share already. */
  refusedConnections = 0;
  #next = 0;
  #server: NetServer | undefined;

  constructor(
    readonly socketPath: string,
    private readonly reader: Pick<PeerCredentialReader, 'read'>,
    private readonly log: Logger,
    limits: Partial<ListenerLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LISTENER_LIMITS, ...limits };
  }

  /** Listen on the socket path and feed accepted connections to `grpc`. */
  async listen(grpc: GrpcServer): Promise<void> {
    prepareSocketPath(this.socketPath);
    const injector = grpc.createConnectionInjector(ServerCredentials.createInsecure());
    const server = createServer((socket) => this.accept(socket, (s) => injector.injectConnection(s)));
    // The backstop; every uid is held to its own share below it (accept).
    server.maxConnections = this.limits.maxConnections;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    try {
      setSocketMode(this.socketPath, SOCKET_MODE);
    } catch (e) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw e;
    }
    this.#server = server;
  }

  private accept(socket: Socket, inject: (s: Socket) => void): void {
    let creds: PeerIds;
    try {
      creds = this.reader.read(socket);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'workload API: cannot read the peer credentials; closing');
      socket.destroy();
      return;
    }
    const held = this.#perUid.get(creds.uid) ?? 0;
    if (held >= this.limits.maxConnectionsPerUid) {
      this.refusedConnections++;
      const t = this.#throttle.take(`limit:${creds.uid}`);
      if (t.log)
        this.log.warn(
          { uid: creds.uid, pid: creds.pid, limit: this.limits.maxConnectionsPerUid, refused_since_last: t.suppressed },
          'workload API: connection refused: this uid already holds max_connections_per_uid connections (the per-uid connection limit)',
        );
      socket.destroy();
      return;
    }
    const peer: ConnectedPeer = {
      ...creds,
      startTime: processStartTime(creds.pid),
      exe: processExeIdentity(creds.pid) ?? null,
    };
    const id = `${PEER_PREFIX}${++this.#next}`;
    // An own property shadows net.Socket's getter; grpc-js reads it through the HTTP/2 session's socket.
    Object.defineProperty(socket, 'remoteAddress', { value: id, enumerable: true });
    const conn: Connection = { id, socket, peer, inFlight: 0, refused: false, timer: undefined };
    this.#conns.set(id, conn);
    this.#perUid.set(creds.uid, held + 1);
    socket.once('close', () => {
      clearTimeout(conn.timer);
      this.#conns.delete(id);
      const n = (this.#perUid.get(creds.uid) ?? 1) - 1;
      if (n > 0) this.#perUid.set(creds.uid, n);
      else this.#perUid.delete(creds.uid);
    });
    this.#arm(conn);
    inject(socket);
  }

  /** (Re)start the idle timer of a connection with nothing in flight. */
  #arm(conn: Connection): void {
    clearTimeout(conn.timer);
    conn.timer = undefined;
    if (conn.inFlight > 0 || conn.socket.destroyed) return;
    const ms = conn.refused ? this.limits.refusedIdleMs : this.limits.idleTimeoutMs;
    conn.timer = setTimeout(() => {
      this.log.debug(
        { uid: conn.peer.uid, pid: conn.peer.pid, idle_ms: ms, refused: conn.refused },
        conn.refused
          ? 'workload API: closing the connection of a refused caller'
          : 'workload API: closing an idle connection',
      );
      conn.socket.destroy();
    }, ms);
    conn.timer.unref();
  }

  /**
   * A call's handler starts on the connection `callPeer`: it is not idle until the returned
   * function is called (once the call has its status, or is cancelled).
   */
  callStarted(callPeer: string): () => void {
    const conn = this.#conns.get(callPeer);
    if (!conn) return () => undefined;
    conn.inFlight++;
    clearTimeout(conn.timer);
    conn.timer = undefined;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      conn.inFlight--;
      this.#arm(conn);
    };
  }

  /** A call on `callPeer` was refused its caller (attestation failed or no entry matches): close it soon. */
  refused(callPeer: string): void {
    const conn = this.#conns.get(callPeer);
    if (!conn || conn.refused) return;
    conn.refused = true;
    this.#arm(conn);
  }

  /**
   * The gRPC server interceptor that tells the listener when calls start and end. A call
   * "starts" when its handler is invoked — at the headers for a client-streaming method (SDS
   * StreamSecrets), at the request's end for the others (grpc-js waits for it) — so headers
   * without a request do not keep a connection from being idle.
   */
  readonly interceptor: ServerInterceptor = (method, call) => {
    const callPeer = call.getPeer();
    let end: (() => void) | undefined;
    let ended = false;
    const begin = (): void => {
      if (!ended && !end) end = this.callStarted(callPeer);
    };
    const finish = (): void => {
      ended = true;
      end?.();
    };
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (md, nxt) => {
            if (method.requestStream) begin();
            nxt(md);
          },
          onReceiveHalfClose: (nxt) => {
            if (!method.requestStream) begin();
            nxt();
          },
          onCancel: finish,
        }),
      sendStatus: (st, next) => {
        finish();
        next(st);
      },
    });
  };

  /** The connection a call came in on (`call.getPeer()`), or undefined when it is not one of ours (or closed). */
  peerOf(callPeer: string): ConnectedPeer | undefined {
    return callPeer.startsWith(PEER_PREFIX) ? this.#conns.get(callPeer)?.peer : undefined;
  }

  get connections(): number {
    return this.#conns.size;
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const c of this.#conns.values()) c.socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      if (lstatSync(this.socketPath).isSocket()) unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }
}

/**
 * Make the socket's directory (0755) if missing, refuse one that others could write to, and
 * remove a stale socket left by an earlier run — only a socket: a symbolic link or a regular
 * file at the path is refused, never followed or deleted (someone could have planted it to
 * make the agent listen, or unlink, elsewhere).
 */
function prepareSocketPath(path: string): void {
  const dir = dirname(path);
  // Missing components are made one by one (0755); an existing directory that is a symlink is refused.
  ensureDir(dir, 0o755);
  const why = socketDirProblem(dir, lstatSync(dir));
  if (why) throw new SigilError('unsafe_path', why);
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

/**
 * Why `dir` (with lstat `st`) cannot hold the socket, or undefined when it can. Whoever can
 * create or rename entries in it can put their own socket at the path — and serve workloads
 * forged identities — or a link the agent would chmod: so it must be owned by root or the
 * agent's user, and not writable by group or others unless sticky (then they cannot remove
 * or rename the agent's socket, only add names of their own).
 */
export function socketDirProblem(dir: string, st: Stats, euid = process.geteuid?.() ?? 0): string | undefined {
  const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
  if (st.uid !== 0 && st.uid !== euid)
    return `workload_api.socket directory ${dir} is owned by uid ${st.uid}, not root or the agent's uid ${euid}: its owner could replace the socket; the socket directory owner check failed (chown root ${dir}, or choose another directory)`;
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0)
    return `workload_api.socket directory ${dir} is writable by ${st.mode & 0o002 ? 'every user' : 'its group'} (mode ${mode}) without the sticky bit: anyone who can write it could replace the socket; the socket directory mode check failed (chmod go-w ${dir})`;
  return undefined;
}

/** open(2)'s O_PATH (asm-generic/fcntl.h, 010000000, on every CPU family peer-credentials.ts accepts); Node does not export it. */
const O_PATH = 0o10000000;
const { O_NOFOLLOW } = fsConstants;

/**
 * chmod the socket without following a link: open the path itself (O_PATH|O_NOFOLLOW: a
 * symlink would be opened as the link, not its target), check that what was opened is a socket,
 * and chmod through /proc/self/fd — the inode that was opened and checked, not whatever the
 * path names by then. (Linux has no lchmod, and fchmod on a socket's own descriptor changes the
 * socket, not the file bind(2) created.)
 */
export function setSocketMode(path: string, mode: number): void {
  let fd: number;
  try {
    fd = openSync(path, O_PATH | O_NOFOLLOW);
  } catch (e) {
    throw new SigilError('unsafe_path', `cannot open the workload_api.socket ${path} to set its mode`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isSocket())
      throw new SigilError(
        'unsafe_path',
        `workload_api.socket ${path} is no longer the agent's socket (${st.isSymbolicLink() ? 'a symbolic link' : 'not a socket'}) after listen; refusing to chmod it`,
      );
    chmodSync(`/proc/self/fd/${fd}`, mode);
  } finally {
    closeSync(fd);
  }
}
