/**
 * Two copies of one request racing an issuing operation — an agent that resent after a lost
 * answer, over a second transport, or a broker that delivered it twice. Both copies pass the
 * early idempotency check before either commits, so only the re-check INSIDE the write
 * transaction can answer the second copy with the first one's stored answer. Without it the
 * second copy fails later (renew: generation_mismatch; join: token_reused; credential: its answer
 * row collides) and the agent is refused what it was just given. The early checks are held until
 * both copies made theirs (test/helpers/racing-early-checks.ts), to open that window for sure.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { namedSigner } from '../../../src/agent/named-signer.js';
import { fromPem } from '../../../src/pki/pem.js';
import { signJws } from '../../../src/protocol/jws.js';
import { TYP_REQUEST } from '../../../src/protocol/messages.js';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import { handleCredential } from '../../../src/server/ops/credential.js';
import { handleJoin } from '../../../src/server/ops/join.js';
import { handleRenew } from '../../../src/server/ops/renew.js';
import { formatAuthorizedKey, sshPublicKeyFromKeyObject } from '../../../src/ssh/public-key.js';
import { newRequestId } from '../../../src/util/secret.js';
import { answerResult, withRacingEarlyChecks } from '../../helpers/racing-early-checks.js';
import { joinPayload, sign, startIssuer, type Harness } from '../../integration/harness.js';

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

describe('renew', () => {
  it('the same renewal twice at once: both get the one certificate, the generation advances once', async () => {
    const id = await h.join();
    const { envelope } = await h.renewEnvelope(id);
    const ctx = withRacingEarlyChecks(h.ctx, 2);
    const [a, b] = await Promise.all([handleRenew(ctx, envelope, null), handleRenew(ctx, envelope, null)]);
    const result = (jws: { payload: string }) => answerResult<{ serial: string; generation: number }>(jws);
    expect(result(b)).toEqual(result(a));
    expect(result(a).generation).toBe(2);
    expect((await h.ctx.stores.certificates.listByInstance(id.result.instance_id)).map((c) => c.generation)).toEqual([
      1, 2,
    ]);
    expect(await h.ctx.stores.instances.get(id.result.instance_id)).toMatchObject({ generation: 2, locked: false });
  });

  it('two different renewals of one generation at once: exactly one succeeds, the other is generation_mismatch', async () => {
    const id = await h.join();
    const [x, y] = await Promise.all([h.renewEnvelope(id), h.renewEnvelope(id)]);
    const ctx = withRacingEarlyChecks(h.ctx, 2);
    const outcomes = await Promise.allSettled([handleRenew(ctx, x.envelope, null), handleRenew(ctx, y.envelope, null)]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    expect(outcomes.find((o) => o.status === 'rejected')).toMatchObject({ reason: { code: 'generation_mismatch' } });
    expect((await h.ctx.stores.certificates.listByInstance(id.result.instance_id)).map((c) => c.generation)).toEqual([
      1, 2,
    ]);
  });
});

describe('join', () => {
  it('the same token join twice at once: both get the one identity, one instance, the token spent once', async () => {
    const token = await h.token();
    const { payload, signer } = await joinPayload({}, { token });
    const envelope = await sign(signer, payload);
    const before = await h.counts();
    const ctx = withRacingEarlyChecks(h.ctx, 2);
    const [a, b] = await Promise.all([handleJoin(ctx, envelope, null), handleJoin(ctx, envelope, null)]);
    expect(answerResult(b)).toEqual(answerResult(a));
    const after = await h.counts();
    expect(after.instances - before.instances).toBe(1);
    expect(after.certificates - before.certificates).toBe(1);
    expect(after.usedTokens - before.usedTokens).toBe(1);
  });
});

describe('credential', () => {
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
    expect(answerResult(b)).toEqual(answerResult(a));
    expect(answerResult<{ certificate: string }>(a).certificate).toMatch(/^ssh-ed25519-cert-v01@openssh.com /);
  });
});
