/**
 * Build a signed `credential` request: the payload (protocol/credential-messages.ts) signed by
 * the agent's CURRENT identity key, its chain in x5c — exactly how a renewal authenticates —
 * naming that identity (instance id, serial) in the payload (./named-signer.ts).
 */
import type { Signer } from '../keystore/signer.js';
import { fromPem } from '../pki/pem.js';
import type { CredentialRequest } from '../protocol/credential-messages.js';
import { signJws, type Jws } from '../protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../protocol/messages.js';
import { newRequestId } from '../util/secret.js';
import { namedSigner } from './named-signer.js';

/** The kind and its fields; the envelope fields (v, op, request id, timestamp) are added here. */
export type CredentialAskFields = Omit<CredentialRequest, 'v' | 'op' | 'request_id' | 'timestamp' | 'instance_id' | 'serial'>;

export async function buildCredentialRequest(p: { current: Signer; chainPem: string[]; now: number; fields: CredentialAskFields; requestId?: string }): Promise<{ envelope: Jws; requestId: string }> {
  const requestId = p.requestId ?? newRequestId();
  const payload: CredentialRequest = { v: PROTOCOL_VERSION, op: 'credential', request_id: requestId, timestamp: p.now, ...namedSigner(p.chainPem), ...p.fields };
  const x5c = p.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
  return { envelope: await signJws(p.current, TYP_REQUEST, payload, x5c), requestId };
}
