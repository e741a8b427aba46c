/**
 * `renew`: the agent presents its current chain (JWS x5c), signed by its current key, with a
 * CSR of a NEW key. Checks, in order, each with its own code:
 *   envelope shape → chain to our CA (chain_invalid) → signature by the leaf (signature_invalid)
 *   → idempotent replay of a known request id (answered even if the cert has since expired:
 *     a lost response must never lock anyone out)
 *   → leaf expiry (cert_expired) → timestamp freshness (stale_request)
 *   → instance known / not locked / bot not locked → generation (older → lock + generation_mismatch)
 *   → new key differs from the current one (key_reused) → issue generation+1.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { SigilError, toSigilError } from '../../errors.js';
import { parseJws, verifyJws, x5cDers, type Jws } from '../../protocol/jws.js';
import { checkVersion, parseWith, renewRequestSchema, TYP_REQUEST, type RenewRequest } from '../../protocol/messages.js';
import { parseCsr } from '../../pki/csr.js';
import { readCertificate } from '../../pki/cert-reader.js';
import { verifyOwnLeaf, type OwnLeaf } from '../../pki/own-leaf.js';
import type { IssuerContext } from '../issuer.js';
import { resolveBot } from '../policy/resources.js';
import { issueIdentity, spkiHash } from './issue.js';
import { payloadHash, replayIfSeen, responsePayload, signResponse } from './respond.js';
import { auditRefusal } from './refusal.js';

interface Presented {
  leaf: OwnLeaf;
  publicKey: KeyObject;
  instanceId: string;
  bot: string;
  serial: string;
}

/**
 * The presented leaf must be one this issuer signed (pki/own-leaf.ts); its time validity is
 * checked later, after the idempotent replay, so a lost response is still answered.
 */
function checkPresentedChain(ctx: IssuerContext, ders: Buffer[]): Presented {
  if (ders.length === 0) throw new SigilError('chain_invalid', 'renewal must carry the current certificate chain in the JWS x5c header');
  // Anything after the leaf must be our own intermediate; say precisely what is wrong otherwise.
  for (const [i, d] of ders.slice(1).entries()) {
    if (ctx.issuingCas.some((c) => c.certDer.equals(d))) continue;
    readCertificate(d, 'bad_certificate', `x5c certificate ${i + 1}`);
    throw new SigilError('chain_invalid', `x5c certificate ${i + 1} is not this issuer's intermediate CA`);
  }
  const leaf = verifyOwnLeaf(ders[0]!, ctx.issuingCas);
  const prefix = `spiffe://${ctx.ca.trustDomain}/bot/`;
  const rest = leaf.spiffeId?.startsWith(prefix) ? leaf.spiffeId.slice(prefix.length).split('/') : [];
  if (rest.length !== 2 || !rest[0] || !rest[1]) throw new SigilError('chain_invalid', `the presented certificate is not a Sigil bot identity of trust domain ${ctx.ca.trustDomain}`);
  const publicKey = createPublicKey({ key: leaf.fields.spki, format: 'der', type: 'spki' });
  return { leaf, publicKey, bot: rest[0], instanceId: rest[1], serial: leaf.serial };
}

export async function handleRenew(ctx: IssuerContext, body: unknown, remote: string | null): Promise<Jws> {
  const started = process.hrtime.bigint();
  let who: Presented | undefined;
  let req: RenewRequest | undefined;
  try {
    const { jws, header } = parseJws(body);
    if (header.typ !== TYP_REQUEST) throw new SigilError('bad_request', `JWS typ must be ${TYP_REQUEST}`);
    who = checkPresentedChain(ctx, x5cDers(header));
    const verified = verifyJws(jws, header, who.publicKey);
    checkVersion(verified.payload);
    req = parseWith(renewRequestSchema, verified.payload, 'bad_request', 'renew request');
    const hash = payloadHash(verified.payloadBytes);

    const replay = replayIfSeen(ctx, req.request_id, hash);
    if (replay) return signResponse(ctx, replay);

    const now = ctx.now();
    if (who.leaf.fields.notAfter.getTime() <= now) {
      throw new SigilError('cert_expired', `the presented certificate expired at ${who.leaf.fields.notAfter.toISOString()}; the agent must join again`);
    }
    const skew = req.timestamp - now;
    if (Math.abs(skew) > ctx.skewMs) {
      throw new SigilError('stale_request', `request timestamp differs from the issuer's clock by ${Math.round(skew / 1000)} s (allowed ±${ctx.skewMs / 1000} s); check the agent's clock (NTP)`);
    }
    const inst = ctx.stores.instances.get(who.instanceId);
    if (!inst || inst.bot !== who.bot) throw new SigilError('unknown_instance', `instance ${who.instanceId} is not known to this issuer`);
    if (inst.locked) throw new SigilError('instance_locked', `instance ${inst.id} is locked (${inst.lockReason ?? 'by an administrator'}); unlock with: sigil ctl --data-dir <issuer-data-dir> unlock ${inst.id}`);
    if (ctx.stores.botLocks.isLocked(inst.bot)) throw new SigilError('bot_locked', `bot "${inst.bot}" is locked; unlock with: sigil ctl --data-dir <issuer-data-dir> unlock ${inst.bot}`);
    const certRec = ctx.stores.certificates.get(who.serial);
    if (!certRec || certRec.instanceId !== inst.id) throw new SigilError('chain_invalid', `certificate serial ${who.serial} was not issued to instance ${inst.id}`);

    if (certRec.generation < inst.generation) {
      // An older credential is being used after a newer one was issued: either a stolen copy
      // or a cloned machine. Lock the instance (ARCHITECTURE protocol sketch) and say why.
      const reason = `generation_mismatch: presented generation ${certRec.generation}, current ${inst.generation}`;
      ctx.stores.tx(() => ctx.stores.instances.setLocked(inst.id, true, reason, now));
      throw new SigilError('generation_mismatch', `stale credential generation ${certRec.generation} presented (current is ${inst.generation}); instance ${inst.id} is now locked. If this is not a stolen credential, inspect with \`sigil ctl --data-dir <issuer-data-dir> instances ls\` and run \`sigil ctl --data-dir <issuer-data-dir> unlock ${inst.id}\``);
    }

    const csr = parseCsr(req.csr);
    if (spkiHash(csr.spkiDer) === who.leaf.spkiHash) throw new SigilError('key_reused', 'the CSR carries the current key; renewal must rotate to a new key');

    const bot = resolveBot(ctx.stores, inst.bot);
    const r = req;
    const payload = ctx.stores.tx(() => {
      const again = replayIfSeen(ctx, r.request_id, hash);
      if (again) return again;
      // Re-read under the write lock: a concurrent renewal of the same generation must not
      // produce two successors.
      const fresh = ctx.stores.instances.get(inst.id)!;
      if (fresh.generation !== certRec.generation) throw new SigilError('generation_mismatch', 'a concurrent renewal already advanced this instance');
      const result = issueIdentity(ctx, {
        op: 'renew',
        requestId: r.request_id,
        instanceId: inst.id,
        bot,
        spkiDer: csr.spkiDer,
        requestedTtlS: r.ttl_s,
        generation: fresh.generation + 1,
        keyStorage: 'software',
        exportable: true,
      });
      const json = responsePayload(ctx, 'renew', r.request_id, result);
      ctx.stores.idempotency.put({ requestId: r.request_id, requestHash: hash, op: 'renew', response: json, createdAt: now });
      ctx.stores.audit.append(
        {
          action: 'renew',
          outcome: 'ok',
          bot: inst.bot,
          instanceId: inst.id,
          method: inst.joinMethod,
          actor: 'agent',
          remote,
          details: { serial: result.serial, previous_serial: certRec.serial, generation: result.generation, ttl_s: result.ttl_s, ttl_clamped: result.ttl_clamped },
        },
        now,
      );
      return json;
    });
    ctx.metrics.renewals.inc({});
    ctx.metrics.issuance.observe(Number(process.hrtime.bigint() - started) / 1e9);
    return signResponse(ctx, payload);
  } catch (err) {
    const e = toSigilError(err);
    auditRefusal(ctx, 'renew', e, { bot: who?.bot ?? null, instanceId: who?.instanceId ?? null, remote, requestId: req?.request_id });
    throw e;
  }
}
