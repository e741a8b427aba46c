/**
 * Who is on the other end of a connected Unix-domain socket: SO_PEERCRED (socket(7), unix(7)),
 * read with getsockopt(fd, SOL_SOCKET, SO_PEERCRED, struct ucred *, socklen_t *) from libc.
 * The Workload API (issue #17) uses it to identify the local process that connected, the way
 * SPIRE's Unix workload attestor does: the kernel, not the client, says which pid/uid/gid it is.
 *
 * Linux only, for three reasons: SO_PEERCRED and struct ucred { pid_t pid; uid_t uid; gid_t gid; }
 * are Linux's (the BSDs and macOS have LOCAL_PEERCRED / getpeereid with another struct and no
 * pid; Windows has nothing of the kind); the option's number differs between CPU families (the
 * table below, from the kernel's uapi socket.h headers); and the descriptor is read from libuv's
 * handle (`socket._handle.fd`, an undocumented Node internal: -1 on Windows, absent for
 * sockets that are not backed by a file descriptor).
 *
 * What the answer means: the credentials the peer had when it called connect() (the kernel
 * records them then; a later setuid does not change them), and a pid that may be reused once
 * that process exits — whoever turns the pid into selectors (/proc/<pid>/…) must check the
 * process is still the one that connected (e.g. its start time) and still connected.
 */
import { endianness } from 'node:os';
import type { Socket } from 'node:net';
import { NativeError } from './errors.js';
import { loadLibrary, requireKoffi } from './koffi.js';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export const LIBC_SONAME = 'libc.so.6';

/**
 * SOL_SOCKET and SO_PEERCRED by Node's `process.arch`: asm-generic/socket.h (1, 17) for most
 * families, arch/powerpc/include/uapi/asm/socket.h (SO_PEERCRED 21). MIPS, SPARC, PA-RISC and
 * Alpha use other values and are not listed: an unknown family is refused, not guessed.
 */
const SOCKOPT_BY_ARCH: Readonly<Record<string, { solSocket: number; soPeercred: number }>> = {
  x64: { solSocket: 1, soPeercred: 17 },
  ia32: { solSocket: 1, soPeercred: 17 },
  arm64: { solSocket: 1, soPeercred: 17 },
  arm: { solSocket: 1, soPeercred: 17 },
  riscv64: { solSocket: 1, soPeercred: 17 },
  s390x: { solSocket: 1, soPeercred: 17 },
  loong64: { solSocket: 1, soPeercred: 17 },
  ppc64: { solSocket: 1, soPeercred: 21 },
};

/** sizeof(struct ucred): pid_t, uid_t, gid_t are 32-bit on every Linux ABI. */
const UCRED_SIZE = 12;

type GetSockOpt = (fd: number, level: number, name: number, value: Buffer, length: [number]) => number;

/** The libc binding; one per user of it (the Workload API server holds one). */
export class PeerCredentialReader {
  private constructor(
    private readonly getsockopt: GetSockOpt,
    private readonly errno: () => number,
    private readonly opt: { solSocket: number; soPeercred: number },
  ) {}

  /** Throws NativeError `unsupported_platform` off Linux (or on an unlisted CPU family), `library_missing` without libc/koffi. */
  static open(platform: NodeJS.Platform = process.platform, arch: string = process.arch): PeerCredentialReader {
    if (platform !== 'linux') {
      throw new NativeError(
        'unsupported_platform',
        `peer credentials of a Unix socket (SO_PEERCRED) exist only on Linux, not on ${platform}`,
      );
    }
    const opt = SOCKOPT_BY_ARCH[arch];
    if (!opt)
      throw new NativeError(
        'unsupported_platform',
        `SO_PEERCRED's number on the CPU family ${arch} is not known to Sigil`,
      );
    const koffi = requireKoffi('reading the peer of a Unix socket');
    const libc = loadLibrary(koffi, LIBC_SONAME, 'the C library (Debian: libc6)');
    const getsockopt = libc.func(
      'int getsockopt(int fd, int level, int name, _Out_ uint8_t *value, _Inout_ uint32_t *length)',
    ) as unknown as GetSockOpt;
    return new PeerCredentialReader(getsockopt, () => koffi.errno(), opt);
  }

  /** The peer of a connected Unix-domain socket (a net.Socket from a net.Server listening on a path, or a client's). */
  read(socket: Socket): PeerCredentials {
    const handle = (socket as unknown as { _handle?: { fd?: unknown; constructor?: { name?: string } } | null })
      ._handle;
    // A TCP socket answers SO_PEERCRED too (pid 0, the overflow uid): only a Unix socket's answer means anything.
    if (!handle || handle.constructor?.name !== 'Pipe') {
      throw new NativeError(
        'call_failed',
        'peer credentials need a connected Unix-domain socket (this one is not, or is closed)',
      );
    }
    const fd = handle.fd;
    if (typeof fd !== 'number' || fd < 0)
      throw new NativeError('call_failed', 'the socket has no file descriptor (closed, or not backed by one)');
    const value = Buffer.alloc(UCRED_SIZE);
    const length: [number] = [UCRED_SIZE];
    if (this.getsockopt(fd, this.opt.solSocket, this.opt.soPeercred, value, length) !== 0) {
      throw new NativeError('call_failed', `getsockopt(SO_PEERCRED) failed: errno ${this.errno()}`);
    }
    if (length[0] !== UCRED_SIZE)
      throw new NativeError(
        'call_failed',
        `getsockopt(SO_PEERCRED) returned ${length[0]} bytes, not struct ucred's ${UCRED_SIZE}`,
      );
    const le = endianness() === 'LE';
    const pid = le ? value.readInt32LE(0) : value.readInt32BE(0);
    const uid = le ? value.readUInt32LE(4) : value.readUInt32BE(4);
    const gid = le ? value.readUInt32LE(8) : value.readUInt32BE(8);
    // pid 0: no peer process (a socket that was never connected by one).
    if (pid <= 0) throw new NativeError('call_failed', `the socket's peer has no process (SO_PEERCRED pid ${pid})`);
    return { pid, uid, gid };
  }
}
