/**
 * "Why did this process get (or not get) an identity?" — `sigil agent workloads [--pid N]`.
 * From the agent's cache (read-only): every registration entry that applies to this node and
 * what is being served for it; with a pid, that process's selectors (attested the way the
 * Workload API attests a caller, from /proc, with the process's effective ids standing in for
 * the connection's SO_PEERCRED) and, per entry, whether it matches or which selectors it lacks.
 */
import { SigilError, toSigilError } from '../../errors.js';
import type { WorkloadStore } from '../state/workload.js';
import { attestProcess, entryMatches, missingSelectors } from './attest.js';
import { processIds, processStartTime } from './proc.js';

export interface WorkloadExplanation {
  socket: string | null;
  trust_domain: string | null;
  bundle_updated: string | null;
  caller?: { pid: number; uid: number; gid: number; selectors: string[] } | { pid: number; error: string };
  entries: Array<{
    id: string;
    spiffe_id: string;
    selectors: string[];
    jwt_audiences: string[];
    /** With --pid: whether the process gets this identity, and if not, what it lacks. */
    matches?: boolean;
    missing?: string[];
    svid: { serial: string; not_after: string; renews_at: string } | null;
    jwt_svids: Array<{ audience: string[]; expires_at: string }>;
  }>;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export function explainWorkloads(
  store: WorkloadStore,
  opts: { socket?: string | undefined; pid?: number | undefined; sha256MaxBytes?: number | undefined },
): WorkloadExplanation {
  const bundles = store.bundles();
  const svids = store.svids();
  const jwts = store.jwts();
  let caller: WorkloadExplanation['caller'];
  let have: Set<string> | undefined;
  if (opts.pid !== undefined) {
    const pid = opts.pid;
    try {
      const ids = processIds(pid);
      const uid = ids?.uids[1];
      const gid = ids?.gids[1];
      if (uid === undefined || gid === undefined) throw new SigilError('not_found', `no process ${pid}`);
      const selectors = attestProcess({ pid, uid, gid }, processStartTime(pid), {
        ...(opts.sha256MaxBytes !== undefined ? { sha256MaxBytes: opts.sha256MaxBytes } : {}),
      });
      caller = { pid, uid, gid, selectors };
      have = new Set(selectors);
    } catch (e) {
      caller = { pid, error: toSigilError(e).message };
    }
  }
  return {
    socket: opts.socket ?? null,
    trust_domain: bundles?.trustDomain ?? null,
    bundle_updated: bundles ? iso(bundles.updatedAt) : null,
    ...(caller ? { caller } : {}),
    entries: store.entries().map((e) => {
      const s = svids.find((x) => x.entryId === e.id && x.spiffeId === e.spiffeId);
      return {
        id: e.id,
        spiffe_id: e.spiffeId,
        selectors: e.selectors,
        jwt_audiences: e.jwtAudiences,
        ...(have ? { matches: entryMatches(e.selectors, have), missing: missingSelectors(e.selectors, have) } : {}),
        svid: s ? { serial: s.serial, not_after: iso(s.notAfter), renews_at: iso(s.renewAfter) } : null,
        jwt_svids: jwts
          .filter((j) => j.entryId === e.id)
          .map((j) => ({ audience: j.audience, expires_at: iso(j.expiresAt) })),
      };
    }),
  };
}

/** The table form. */
export function formatExplanation(x: WorkloadExplanation): string {
  const out: string[] = [];
  out.push(`socket        ${x.socket ?? '(workload_api not configured)'}`);
  out.push(`trust domain  ${x.trust_domain ?? '(no bundle yet: the Workload API answers Unavailable)'}`);
  if (x.caller) {
    if ('error' in x.caller) out.push(`pid ${x.caller.pid}: ${x.caller.error}`);
    else {
      out.push(`pid ${x.caller.pid}  uid ${x.caller.uid}  gid ${x.caller.gid}`);
      out.push(`selectors     ${x.caller.selectors.join(' ')}`);
    }
  }
  if (x.entries.length === 0) out.push('no registration entries apply to this node (or none synced yet)');
  for (const e of x.entries) {
    const verdict =
      e.matches === undefined ? '' : e.matches ? '  MATCHES' : `  no match, lacks: ${e.missing!.join(' ')}`;
    out.push('');
    out.push(`entry ${e.id}  ${e.spiffe_id}${verdict}`);
    out.push(`  selectors   ${e.selectors.join(' ')}`);
    out.push(
      `  x509-svid   ${e.svid ? `serial ${e.svid.serial}  expires ${e.svid.not_after}  renews ${e.svid.renews_at}` : 'not issued yet'}`,
    );
    for (const j of e.jwt_svids) out.push(`  jwt-svid    aud ${j.audience.join(',')}  expires ${j.expires_at}`);
  }
  if (x.caller && !('error' in x.caller) && !x.entries.some((e) => e.matches))
    out.push('', 'this process gets PermissionDenied: no entry matches all of its selectors');
  return `${out.join('\n')}\n`;
}
