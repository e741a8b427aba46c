/**
 * Verify an issuer response envelope on the agent: x5c chains to the pinned root, the signer
 * is the issuer (SPIFFE ID spiffe://<td>/sigil/issuer), the signature holds, and the payload
 * answers *this* request. This is what makes an untrusted carrier (an MQTT broker) harmless.
 */
import { SigilError } from '../errors.js';
import { spiffeIdOf, verifyChain } from '../pki/chain.js';
import { fromPem } from '../pki/pem.js';
import { parseJws, verifyJws, x5cDers } from './jws.js';
import { parseWith, responseSchemas, TYP_RESPONSE } from './messages.js';
import type { z } from 'zod';

export function verifyResponse<Op extends keyof typeof responseSchemas>(
  body: unknown,
  op: Op,
  requestId: string | null,
  rootPem: string,
  now: Date = new Date(),
): z.infer<(typeof responseSchemas)[Op]> {
  const { jws, header } = parseJws(body, 'response_invalid');
  if (header.typ !== TYP_RESPONSE) throw new SigilError('response_invalid', `response typ is ${header.typ}, expected ${TYP_RESPONSE}`);
  const ders = x5cDers(header);
  if (ders.length === 0) throw new SigilError('response_invalid', 'response carries no signer chain');
  let leaf;
  try {
    leaf = verifyChain({ leaf: ders[0]!, intermediates: ders.slice(1), roots: [fromPem(rootPem, 'CERTIFICATE')], at: now }).leaf;
  } catch (e) {
    throw new SigilError('response_invalid', `response signer does not chain to the pinned issuer CA: ${(e as Error).message}`);
  }
  if (!spiffeIdOf(leaf)?.endsWith('/sigil/issuer')) throw new SigilError('response_invalid', 'response is not signed by an issuer identity');
  const v = verifyJws(jws, header, leaf.publicKey, 'response_invalid');
  const payload = parseWith(responseSchemas[op] as z.ZodType, v.payload, 'response_invalid', `${op} response`) as { request_id: string | null };
  if (payload.request_id !== requestId) throw new SigilError('response_invalid', `response answers request ${String(payload.request_id)}, expected ${String(requestId)}`);
  return payload as z.infer<(typeof responseSchemas)[Op]>;
}
