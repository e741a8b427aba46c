import type { Jws } from '../../protocol/jws.js';
import type { BundleResult } from '../../protocol/messages.js';
import type { IssuerContext } from '../issuer.js';
import { responsePayload, signResponse } from './respond.js';

/** `bundle`: the trust anchors agents and workloads should trust, signed like every response. */
export function handleBundle(ctx: IssuerContext): Jws {
  const result: BundleResult = {
    trust_domain: ctx.ca.trustDomain,
    roots: [ctx.ca.rootPem.trim() + '\n'],
    intermediates: [ctx.ca.intermediatePem.trim() + '\n'],
  };
  return signResponse(ctx, responsePayload(ctx, 'bundle', null, result));
}
