/**
 * One interval attestation (issue #16; docs/attest-interval.md): the `attest` operation
 * (protocol/attest-messages.ts), signed by the agent's CURRENT identity key and sent over the
 * agent's issuer link — every configured transport, HTTPS or MQTT, in order, with failover on
 * retryable errors (./transports.ts). The answer is verified against the pinned root (a signed
 * refusal over MQTT is thrown as its error) and must name this agent's instance.
 *
 * The evidence is the join method's (its `freshEvidence` capability, join/registry.ts; tpm: a
 * quote by the join's AK), made for THIS request: its binding is
 * attestationBinding('attest', request id, SHA-256 of the identity's SPKI), so it cannot be
 * replayed into another request or under another identity. A method without the capability, or
 * one that answers undefined (the join rule names no firmware profile), does not attest.
 */
import { SigilError, toSigilError } from '../errors.js';
import { loadSigner, parseKeyRef, withTcti, type TpmAccesses } from '../keystore/index.js';
import { fromPem } from '../pki/pem.js';
import { attestBindingExtra, attestResponseSchema, type AttestRequest } from '../protocol/attest-messages.js';
import { signJws } from '../protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../protocol/messages.js';
import { requestHash } from '../protocol/request-hash.js';
import { attestationBinding } from '../attest/binding.js';
import { newRequestId } from '../util/secret.js';
import { namedSigner, readLeaf } from './named-signer.js';
import type { AgentState } from './state/index.js';
import type { IssuerLink } from './transports.js';

/** What one attempt came to; kept (./attest-schedule.ts) for `sigil agent status`. */
export type AttestOutcome =
  | { kind: 'ok'; at: number; profile: string | null; rebooted?: boolean; transport: string | null }
  | {
      kind: 'refused' | 'failed';
      at: number;
      code: string;
      message: string;
      retryable: boolean;
      transport: string | null;
    }
  /** Nothing sent: no usable identity yet, or the method has no evidence for this instance. */
  | { kind: 'skipped'; at: number; reason: 'not_joined' | 'no_evidence' | 'renewal_pending' };

export interface AttestClientDeps {
  state: Pick<AgentState, 'getIdentity' | 'getBundle' | 'getOutbox'>;
  link: Pick<IssuerLink, 'postRaw' | 'verifier' | 'root' | 'lastUsed'>;
  now: () => number;
  /** The join method's capability (undefined: the method has none). */
  freshEvidence: ((binding: Buffer) => Promise<Record<string, unknown> | undefined>) | undefined;
  /** The method's onAttestationAccepted (tpm: this quote's clock counters are now the issuer's). */
  accepted?: (() => void) | undefined;
  tpmTcti?: string | undefined;
  tpm?: TpmAccesses;
}

/** One attestation; never throws (a failure is an outcome, named by its code). */
export async function attestOnce(d: AttestClientDeps): Promise<AttestOutcome> {
  const at = d.now();
  const id = d.state.getIdentity();
  if (!id || id.notAfter <= at) return { kind: 'skipped', at, reason: 'not_joined' };
  // Signed with an identity a pending renewal may have replaced already (see the Workload API's
  // issuer client): the next interval attests with the new one.
  if (d.state.getOutbox().length > 0) return { kind: 'skipped', at, reason: 'renewal_pending' };
  if (!d.freshEvidence) return { kind: 'skipped', at, reason: 'no_evidence' };
  try {
    const requestId = newRequestId();
    const binding = attestationBinding('attest', requestId, attestBindingExtra(readLeaf(id.chainPem[0]!).spki));
    const evidence = await d.freshEvidence(binding);
    if (evidence === undefined) return { kind: 'skipped', at, reason: 'no_evidence' };
    const root = d.state.getBundle()?.rootsPem[0] ?? (await d.link.root());
    const payload: AttestRequest = {
      v: PROTOCOL_VERSION,
      op: 'attest',
      request_id: requestId,
      timestamp: d.now(),
      ...namedSigner(id.chainPem),
      evidence,
    };
    const signer = loadSigner(withTcti(parseKeyRef(id.keyRef), d.tpmTcti), d.tpm ? { tpm: d.tpm } : {});
    let envelope;
    try {
      envelope = await signJws(
        signer,
        TYP_REQUEST,
        payload,
        id.chainPem.map((c) => fromPem(c, 'CERTIFICATE')),
      );
    } finally {
      signer.close?.();
    }
    const body = await d.link.postRaw('attest', envelope);
    const r = d.link.verifier
      .know({ attest: attestResponseSchema })
      .responseOrError(body, 'attest', requestId, requestHash(envelope), root, new Date(d.now())).result;
    if (r.instance_id !== id.instanceId)
      throw new SigilError(
        'answer_mismatch',
        `the attest answer is for instance ${r.instance_id}, not ${id.instanceId}`,
      );
    d.accepted?.();
    return {
      kind: 'ok',
      at: r.at,
      profile: r.profile,
      ...(r.rebooted !== undefined ? { rebooted: r.rebooted } : {}),
      transport: transportOf(d.link),
    };
  } catch (err) {
    const e = toSigilError(err);
    return {
      kind: e.retryable ? 'failed' : 'refused',
      at: d.now(),
      code: e.code,
      message: e.message.slice(0, 2000),
      retryable: e.retryable,
      transport: transportOf(d.link),
    };
  }
}

function transportOf(link: Pick<IssuerLink, 'lastUsed'>): string | null {
  const t = link.lastUsed;
  return t ? `${t.kind} ${t.url}` : null;
}
