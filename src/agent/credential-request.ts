/**
 * Build a signed `credential` request: the payload (protocol/credential-messages.ts) signed by
 * the agent's CURRENT identity key, its chain in x5c — exactly how a renewal authenticates —
 * naming that identity (instance id, serial) in the payload (./named-signer.ts).
 *
 * A secret-bearing kind (a JWT) also names `answer_key`, a fresh P-256 public key the issuer
 * encrypts the secret to (protocol/answer-key.ts): required over MQTT, where the broker and
 * other agents read answers, and sent over HTTPS too, so there is one code path. Its private
 * half lives only in the returned object: a request is never persisted (./credentials.ts), and
 * its failover resends (same request id, same bytes) happen within one `request` call that holds
 * it (./credential-client.ts).
 */
import type { KeyObject } from 'node:crypto';
import type { Signer } from '../keystore/signer.js';
import { fromPem } from '../pki/pem.js';
import { newAnswerKey } from '../protocol/answer-key.js';
import { SECRET_KINDS, type CredentialRequest } from '../protocol/credential-messages.js';
import { signJws, type Jws } from '../protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../protocol/messages.js';
import { newRequestId } from '../util/secret.js';
import { namedSigner } from './named-signer.js';

/** The kind and its fields; the envelope fields (v, op, request id, timestamp, answer key) are added here. */
export type CredentialAskFields = Omit<
  CredentialRequest,
  'v' | 'op' | 'request_id' | 'timestamp' | 'instance_id' | 'serial' | 'answer_key'
>;

export interface BuiltCredentialRequest {
  envelope: Jws;
  requestId: string;
  /** The private half of the request's answer_key (secret-bearing kinds only). */
  answerKey?: KeyObject;
}

export async function buildCredentialRequest(p: {
  current: Signer;
  chainPem: string[];
  now: number;
  fields: CredentialAskFields;
  requestId?: string;
}): Promise<BuiltCredentialRequest> {
  const requestId = p.requestId ?? newRequestId();
  const sealed = SECRET_KINDS.has(p.fields.kind) ? newAnswerKey() : undefined;
  const payload: CredentialRequest = {
    v: PROTOCOL_VERSION,
    op: 'credential',
    request_id: requestId,
    timestamp: p.now,
    ...namedSigner(p.chainPem),
    ...p.fields,
    ...(sealed ? { answer_key: sealed.publicJwk } : {}),
  };
  const x5c = p.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
  const envelope = await signJws(p.current, TYP_REQUEST, payload, x5c);
  return { envelope, requestId, ...(sealed ? { answerKey: sealed.privateKey } : {}) };
}
