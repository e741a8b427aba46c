/**
 * Whether process `pid` itself holds a listening TCP socket on 127.0.0.1:`port` (Linux /proc).
 *
 * Why: test daemons (swtpm) are given ports found free a moment earlier; if another process took
 * one in between, the daemon's bind fails, and "the port accepts connections" is then true of the
 * other process. A TPM client pointed there waits for answers that never come. Matching the
 * listening socket's inode (/proc/net/tcp) with the daemon's descriptors (/proc/PID/fd) says who
 * really listens.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

const TCP_LISTEN = '0A';

/** Inodes of the sockets listening on 127.0.0.1:port or 0.0.0.0:port (/proc/net/tcp, IPv4). */
function listeningInodes(port: number): Set<string> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    const [addr, p] = (f[1] ?? '').split(':');
    if (p !== hexPort || f[3] !== TCP_LISTEN) continue;
    if (addr === '0100007F' || addr === '00000000') inodes.add(f[9]!);
  }
  return inodes;
}

export function listensOn(pid: number, port: number): boolean {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return false;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // gone
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && inodes.has(m[1]!)) return true;
    } catch {
      // closed while we looked
    }
  }
  return false;
}
