/**
 * Build the signed join and renew requests. A join envelope is signed by the new key (proof of
 * possession bound to the evidence); a renew envelope is signed by the *current* key with the
 * current chain in x5c, and carries a CSR of a fresh key. With `transport`, either also carries
 * the CSR of a fresh software key for an MQTT transport certificate (./transport-cert.ts); the
 * outbox entry keeps that key.
 */
import type { EvidenceContext } from '../join/types.js';
import { createSigner, serializeKeyRef, type KeyRef } from '../keystore/index.js';
import type { Signer } from '../keystore/signer.js';
import { buildCsr } from '../pki/csr.js';
import { fromPem, toPem } from '../pki/pem.js';
import { signJws, type Jws } from '../protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../protocol/messages.js';
// Types only: erased, so the agent never loads the request schemas (issue #19).
import type { JoinRequest, RenewRequest } from '../protocol/requests.js';
import { newRequestId } from '../util/secret.js';
import { SIGIL_VERSION } from '../version.js';
import type { OutboxEntry } from './state/index.js';
import { namedSigner } from './named-signer.js';
import { newTransportKey } from './transport-cert.js';

export interface BuiltRequest {
  entry: OutboxEntry;
  envelope: Jws;
}

/** The transport key and its `transport_csr` field, when asked for. */
async function transportPart(
  want: boolean | undefined,
): Promise<{ fields: { transport_csr?: string }; entry: { transportKeyPem?: string } }> {
  if (!want) return { fields: {}, entry: {} };
  const t = newTransportKey();
  return {
    fields: { transport_csr: toPem('CERTIFICATE REQUEST', await buildCsr(t.signer)) },
    entry: { transportKeyPem: t.pkcs8Pem },
  };
}

export async function buildJoinRequest(p: {
  method: string;
  evidence: (ctx: EvidenceContext) => Promise<Record<string, unknown>>;
  ttlS?: number;
  now: number;
  /** Where the new key is made (default: software). */
  newKey?: () => Promise<NewKey>;
  /** Ask for an MQTT transport certificate too. */
  transport?: boolean;
}): Promise<BuiltRequest> {
  const { signer, ref } = p.newKey ? await p.newKey() : createSigner('software');
  const transport = await transportPart(p.transport);
  const requestId = newRequestId();
  const evidence = await p.evidence({ requestId, spkiDer: signer.publicKeySpki() });
  const payload: JoinRequest = {
    v: PROTOCOL_VERSION,
    op: 'join',
    request_id: requestId,
    timestamp: p.now,
    method: p.method,
    csr: toPem('CERTIFICATE REQUEST', await buildCsr(signer)),
    evidence,
    key_storage: signer.storage,
    ...(p.ttlS !== undefined ? { ttl_s: p.ttlS } : {}),
    ...transport.fields,
    // Shown on the fleet view as this agent's claim (issue #18); the issuer decides nothing by it.
    agent_version: SIGIL_VERSION,
  };
  const envelope = await signJws(signer, TYP_REQUEST, payload);
  return {
    envelope,
    entry: {
      requestId,
      op: 'join',
      body: JSON.stringify(envelope),
      createdAt: p.now,
      pendingKeyRef: serializeKeyRef(ref),
      ...transport.entry,
    },
  };
}

export interface NewKey {
  signer: Signer;
  ref: KeyRef;
}

export async function buildRenewRequest(p: {
  current: Signer;
  chainPem: string[];
  ttlS?: number;
  now: number;
  /** Where the new key is made (default: software). */
  newKey?: () => Promise<NewKey>;
  /** Proof that the new key is hardware-resident (TPM2_Certify by the AK), bound to the request id. */
  attest?: (key: Signer, requestId: string) => Promise<Record<string, unknown> | undefined>;
  /** Fresh boot-state evidence bound to the request id and the new key's SPKI (issue #16); undefined: none. */
  evidence?: (requestId: string, newSpkiDer: Buffer) => Promise<Record<string, unknown> | undefined>;
  /** Ask for an MQTT transport certificate too. */
  transport?: boolean;
}): Promise<BuiltRequest> {
  const { signer, ref } = p.newKey ? await p.newKey() : createSigner('software');
  const transport = await transportPart(p.transport);
  const requestId = newRequestId();
  const keyAttestation = p.attest ? await p.attest(signer, requestId) : undefined;
  const attestation = p.evidence ? await p.evidence(requestId, signer.publicKeySpki()) : undefined;
  const payload: RenewRequest = {
    v: PROTOCOL_VERSION,
    op: 'renew',
    request_id: requestId,
    timestamp: p.now,
    ...namedSigner(p.chainPem),
    csr: toPem('CERTIFICATE REQUEST', await buildCsr(signer)),
    key_storage: signer.storage,
    ...(p.ttlS !== undefined ? { ttl_s: p.ttlS } : {}),
    ...(keyAttestation ? { key_attestation: keyAttestation } : {}),
    ...(attestation ? { attestation } : {}),
    ...transport.fields,
    agent_version: SIGIL_VERSION,
  };
  const x5c = p.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
  const envelope = await signJws(p.current, TYP_REQUEST, payload, x5c);
  return {
    envelope,
    entry: {
      requestId,
      op: 'renew',
      body: JSON.stringify(envelope),
      createdAt: p.now,
      pendingKeyRef: serializeKeyRef(ref),
      ...transport.entry,
    },
  };
}
