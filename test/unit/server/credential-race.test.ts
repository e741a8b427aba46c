/**
 * Two copies of one credential request racing (server/ops/credential.ts), as an agent retrying
 * after a lost answer over a second transport produces: both pass the early idempotency check
 * before either commits, so only the re-check INSIDE the write transaction can answer the second
 * copy with the first one's stored answer (without it the second copy's answer row collides with
 * the first one's and the agent gets an error for a credential it was issued). The early checks
 * are held until both copies made theirs (as in ./renew-race.test.ts and ./join-race.test.ts).
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { namedSigner } from '../../../src/agent/named-signer.js';
import { fromPem } from '../../../src/pki/pem.js';
import { signJws } from '../../../src/protocol/jws.js';
import { TYP_REQUEST } from '../../../src/protocol/messages.js';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import type { IssuerContext } from '../../../src/server/issuer.js';
import { handleCredential } from '../../../src/server/ops/credential.js';
import type { IdempotencyStore, Stores } from '../../../src/server/store/types.js';
import { formatAuthorizedKey, sshPublicKeyFromKeyObject } from '../../../src/ssh/public-key.js';
import { newRequestId } from '../../../src/util/secret.js';
import { startIssuer, type Harness } from '../../integration/harness.js';

const POLICY = `
kind: role
name: ssh
spec: { allowed_outputs: [identity, ssh_user], ssh_logins: [deploy] }
---
kind: bot
name: racer
spec: { roles: [ssh] }
`;

let h: Harness;
beforeEach(async () => {
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', { yaml: POLICY });
});
afterEach(async () => {
  await h?.close();
});

function withRacingEarlyChecks(ctx: IssuerContext, copies: number): IssuerContext {
  const real = ctx.stores.idempotency;
  const waiting: Array<() => void> = [];
  const idempotency = Object.assign(Object.create(real) as IdempotencyStore, {
    get: async (requestId: string) => {
      const seen = await real.get(requestId);
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        if (waiting.length === copies) for (const go of waiting) go();
      });
      return seen;
    },
  });
  return { ...ctx, stores: Object.assign(Object.create(ctx.stores) as Stores, { idempotency }) };
}

it('the same SSH certificate request twice at once: both get the one certificate', async () => {
  const id = await h.join({ token: await h.token({ bot: 'racer' }) });
  const payload = {
    v: 1,
    op: 'credential',
    request_id: newRequestId(),
    timestamp: h.ctx.now(),
    ...namedSigner(id.chainPem),
    kind: 'ssh_user',
    public_key: formatAuthorizedKey(sshPublicKeyFromKeyObject(generateKeyPairSync('ed25519').publicKey).blob),
  };
  const envelope = await signJws(
    id.signer,
    TYP_REQUEST,
    payload,
    id.chainPem.map((c) => fromPem(c, 'CERTIFICATE')),
  );
  const ctx = withRacingEarlyChecks(h.ctx, 2);
  const [a, b] = await Promise.all([
    handleCredential(ctx, envelope, null, { confidential: true }),
    handleCredential(ctx, envelope, null, { confidential: true }),
  ]);
  const resultOf = (jws: { payload: string }) =>
    (JSON.parse(Buffer.from(jws.payload, 'base64url').toString()) as { result: { certificate: string } }).result;
  expect(resultOf(b)).toEqual(resultOf(a));
  expect(resultOf(a).certificate).toMatch(/^ssh-ed25519-cert-v01@openssh.com /);
});
