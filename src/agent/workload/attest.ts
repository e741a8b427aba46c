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
 */
import { SigilError } from '../../errors.js';
import { groupName, userName, type AccountFiles, SYSTEM_ACCOUNT_FILES } from './accounts.js';
import { processExe, processExeSha256, processIds, processStartTime, processSystemdUnit } from './proc.js';

export interface PeerIds {
  pid: number;
  uid: number;
  gid: number;
}

export interface AttestOptions {
  /** `unix:sha256` only when set: executables up to this size are hashed. */
  sha256MaxBytes?: number;
  procRoot?: string;
  accounts?: AccountFiles;
}

/**
 * The caller's selectors, sorted. `startTimeAtAccept`: the start time read when the connection
 * was accepted (undefined for `sigil agent workloads --pid`, which has no connection). Throws
 * `unauthorized` naming the check that failed.
 */
export function attestProcess(
  peer: PeerIds,
  startTimeAtAccept: string | undefined,
  opts: AttestOptions = {},
): string[] {
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
  const accounts = opts.accounts ?? SYSTEM_ACCOUNT_FILES;
  const selectors = [`unix:uid:${peer.uid}`, `unix:gid:${peer.gid}`];
  const user = userName(peer.uid, accounts);
  if (user !== undefined) selectors.push(`unix:user:${user}`);
  const group = groupName(peer.gid, accounts);
  if (group !== undefined) selectors.push(`unix:group:${group}`);
  const exe = processExe(peer.pid, procRoot);
  if (exe !== undefined) selectors.push(`unix:path:${exe}`);
  if (opts.sha256MaxBytes !== undefined) {
    const sha = processExeSha256(peer.pid, opts.sha256MaxBytes, procRoot);
    if (sha !== undefined) selectors.push(`unix:sha256:${sha}`);
  }
  const unit = processSystemdUnit(peer.pid, procRoot);
  if (unit !== undefined) selectors.push(`systemd:unit:${unit}`);
  // The /proc reads above must all have been of the process that was there before them.
  const after = processStartTime(peer.pid, procRoot);
  if (after !== before)
    throw new SigilError(
      'unauthorized',
      `pid ${peer.pid} exited or was reused while it was being attested (start time ${before} → ${after ?? 'gone'})`,
    );
  return selectors.sort();
}

/** An entry applies to a caller when the caller has every one of its selectors (an entry without selectors: never). */
export function entryMatches(entrySelectors: readonly string[], caller: ReadonlySet<string>): boolean {
  return entrySelectors.length > 0 && entrySelectors.every((s) => caller.has(s));
}

/** The entry's selectors the caller lacks (for "why not": `sigil agent workloads --pid`). */
export function missingSelectors(entrySelectors: readonly string[], caller: ReadonlySet<string>): string[] {
  return entrySelectors.filter((s) => !caller.has(s));
}
