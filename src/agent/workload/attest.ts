/**
 * Workload attestation: from the kernel's word on who connected (SO_PEERCRED: pid, uid, gid at
 * connect(2)) to the selectors registration entries are written in — `unix:uid:1000`,
 * `unix:user:web`, `unix:gid:…`, `unix:group:…`, `unix:path:/usr/bin/envoy`,
 * `unix:sha256:<hex>` (opt-in), `systemd:unit:envoy.service`.
 *
 * uid and gid come from the kernel, never from /proc. What comes from /proc (path, hash, unit)
 * is bound to the process that connected by two checks, against a local user who races pid
 * reuse (docs/workload-api.md, threats):
 * - the start time (/proc/<pid>/stat field 22) read before and after the /proc reads equals the
 *   one recorded when the connection was accepted: a pid that was reused since names another
 *   process, with another start time;
 * - the process's effective uid (/proc/<pid>/status) is the uid the kernel recorded at connect:
 *   a connection whose pid now belongs to a process of another user — the attacker's process
 *   exited, handing the socket to a child, and the pid was reused by the victim — is refused.
 *
 * The executable (`unix:path`, `unix:sha256`) is pinned to the connection too: the listener
 * records the device and inode of /proc/<pid>/exe when it accepts the connection, and a call
 * whose process runs another file now — it called execve(2) since, which keeps the pid and
 * the start time — is refused. Otherwise a process could connect, hand the connection to a
 * child, and exec the binary an entry names; the child would ask with that binary's selectors.
 */
import { closeSync } from 'node:fs';
import { SigilError } from '../../errors.js';
import { groupName, userName, type AccountFiles, SYSTEM_ACCOUNT_FILES } from './accounts.js';
import type { ExeHasher } from './exe-hasher.js';
import {
  type ExeIdentity,
  hashOpenedExeSync,
  type OpenedExe,
  openProcessExe,
  processExe,
  processExeIdentity,
  processIds,
  processStartTime,
  processSystemdUnit,
  sameExe,
} from './proc.js';

export interface PeerIds {
  pid: number;
  uid: number;
  gid: number;
}

export interface AttestOptions {
  /** `unix:sha256` only when set: executables up to this size are hashed. */
  sha256MaxBytes?: number;
  /**
   * Whether the sha256 selector is worth computing for a caller with these (other) selectors:
   * the server hashes only when a registration entry uses `unix:sha256` and the caller has all
   * of that entry's other selectors. Default: always (the CLI).
   */
  wantSha256?: (selectors: readonly string[]) => boolean;
  procRoot?: string;
  accounts?: AccountFiles;
}

/**
 * The executable recorded when the connection was accepted: `undefined` when there is no
 * connection (`sigil agent workloads --pid`: nothing to pin), `null` when it could not be read
 * then (the caller then gets no `unix:path`/`unix:sha256` selector at all).
 */
export type ExeAtAccept = ExeIdentity | null | undefined;

interface Facts {
  selectors: string[];
  /** Opened for the sha256 selector (the caller hashes and closes it). */
  exe: OpenedExe | undefined;
}

/**
 * Everything but the hash, read inside the start-time bracket. Throws `unauthorized` naming
 * the check that failed.
 */
function attestFacts(
  peer: PeerIds,
  startTimeAtAccept: string | undefined,
  exeAtAccept: ExeAtAccept,
  opts: AttestOptions,
): Facts {
  const procRoot = opts.procRoot ?? '/proc';
  const before = processStartTime(peer.pid, procRoot);
  if (before === undefined)
    throw new SigilError('unauthorized', `the calling process ${peer.pid} has exited; nothing to attest`);
  if (startTimeAtAccept !== undefined && before !== startTimeAtAccept)
    throw new SigilError(
      'unauthorized',
      `pid ${peer.pid} now belongs to another process than the one that connected (start time ${before}, was ${startTimeAtAccept})`,
    );
  const ids = processIds(peer.pid, procRoot);
  const euid = ids?.uids[1];
  if (euid !== peer.uid)
    throw new SigilError(
      'unauthorized',
      `pid ${peer.pid} runs as uid ${euid ?? '?'} but connected as uid ${peer.uid}; refusing to attest another user's process`,
    );
  // The executable: the one the process ran when the connection was accepted, or nothing.
  let exeKnown = exeAtAccept !== null;
  const exeNow = processExeIdentity(peer.pid, procRoot);
  if (exeAtAccept) {
    if (!exeNow || !sameExe(exeNow, exeAtAccept))
      throw new SigilError(
        'unauthorized',
        `pid ${peer.pid} no longer runs the executable it ran when it connected (now ${processExe(peer.pid, procRoot) ?? '?'}, ` +
          `inode ${exeNow ? `${exeNow.dev}:${exeNow.ino}` : '?'}; was inode ${exeAtAccept.dev}:${exeAtAccept.ino}): ` +
          `it called execve since; the executable check failed (a process that execs must reconnect)`,
      );
  }
  if (!exeNow) exeKnown = false;
  const accounts = opts.accounts ?? SYSTEM_ACCOUNT_FILES;
  const selectors = [`unix:uid:${peer.uid}`, `unix:gid:${peer.gid}`];
  const user = userName(peer.uid, accounts);
  if (user !== undefined) selectors.push(`unix:user:${user}`);
  const group = groupName(peer.gid, accounts);
  if (group !== undefined) selectors.push(`unix:group:${group}`);
  const unit = processSystemdUnit(peer.pid, procRoot);
  if (unit !== undefined) selectors.push(`systemd:unit:${unit}`);
  const path = exeKnown ? processExe(peer.pid, procRoot) : undefined;
  if (path !== undefined) selectors.push(`unix:path:${path}`);
  let exe: OpenedExe | undefined;
  if (exeKnown && opts.sha256MaxBytes !== undefined && (opts.wantSha256?.(selectors) ?? true)) {
    exe = openProcessExe(peer.pid, opts.sha256MaxBytes, procRoot);
    // The descriptor must be of the file checked above (one open, one fstat, hashed through it).
    if (exe && exeNow && !sameExe({ dev: String(exe.st.dev), ino: String(exe.st.ino) }, exeNow)) {
      closeSync(exe.fd);
      throw new SigilError(
        'unauthorized',
        `pid ${peer.pid} changed its executable while it was being attested; the executable check failed`,
      );
    }
  }
  // The /proc reads above must all have been of the process that was there before them.
  const after = processStartTime(peer.pid, procRoot);
  if (after !== before) {
    if (exe) closeSync(exe.fd);
    throw new SigilError(
      'unauthorized',
      `pid ${peer.pid} exited or was reused while it was being attested (start time ${before} → ${after ?? 'gone'})`,
    );
  }
  return { selectors, exe };
}

/**
 * The caller's selectors, sorted, synchronously (`sigil agent workloads --pid`, which has no
 * connection: `startTimeAtAccept` is the start time read just before). Throws `unauthorized`
 * naming the check that failed.
 */
export function attestProcess(
  peer: PeerIds,
  startTimeAtAccept: string | undefined,
  opts: AttestOptions = {},
  exeAtAccept: ExeAtAccept = undefined,
): string[] {
  const { selectors, exe } = attestFacts(peer, startTimeAtAccept, exeAtAccept, opts);
  if (exe) {
    try {
      const sha = hashOpenedExeSync(exe, opts.sha256MaxBytes!);
      if (sha !== undefined) selectors.push(`unix:sha256:${sha}`);
    } finally {
      closeSync(exe.fd);
    }
  }
  return selectors.sort();
}

/**
 * The selectors of a connected caller (the Workload API server): as {@link attestProcess}, with
 * the executable pinned to the one recorded at accept, and the hash — when wanted at all —
 * cached and computed off the event loop by `hasher`.
 */
export async function attestCaller(
  peer: PeerIds & { startTime: string | undefined; exe: ExeIdentity | null },
  opts: AttestOptions & { hasher: ExeHasher },
): Promise<string[]> {
  // A connection whose start time could not be read at accept: '' never equals a real one.
  const { selectors, exe } = attestFacts(peer, peer.startTime ?? '', peer.exe, opts);
  if (exe) {
    try {
      const sha = await opts.hasher.hash(exe, opts.sha256MaxBytes!);
      if (sha !== undefined) selectors.push(`unix:sha256:${sha}`);
    } finally {
      closeSync(exe.fd);
    }
  }
  return selectors.sort();
}

/**
 * Whether a caller with `selectors` (all but sha256) could match an entry that needs its
 * executable's hash: only then is the executable hashed.
 */
export function sha256Needed(
  entries: ReadonlyArray<{ selectors: readonly string[] }>,
  selectors: readonly string[],
): boolean {
  const have = new Set(selectors);
  return entries.some(
    (e) =>
      e.selectors.some((s) => s.startsWith('unix:sha256:')) &&
      e.selectors.every((s) => s.startsWith('unix:sha256:') || have.has(s)),
  );
}

/** An entry applies to a caller when the caller has every one of its selectors (an entry without selectors: never). */
export function entryMatches(entrySelectors: readonly string[], caller: ReadonlySet<string>): boolean {
  return entrySelectors.length > 0 && entrySelectors.every((s) => caller.has(s));
}

/** The entry's selectors the caller lacks (for "why not": `sigil agent workloads --pid`). */
export function missingSelectors(entrySelectors: readonly string[], caller: ReadonlySet<string>): string[] {
  return entrySelectors.filter((s) => !caller.has(s));
}
