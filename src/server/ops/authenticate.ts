/**
 * Authentication by the agent's CURRENT identity, shared by every operation a joined agent
 * signs (`renew`, `credential`). Two phases, because an idempotent replay must be answered
 * between them (a lost response is answered even after the certificate expired):
 *
 *   authenticateRequest   envelope shape → typ → x5c chain to our own intermediate (chain_invalid)
 *                         → signature by the leaf (signature_invalid)
 *   checkCurrentIdentity  leaf expiry (cert_expired) → timestamp freshness (stale_request)
 *                         → instance known / not locked / bot not locked → the leaf is an
 *                         identity this instance holds (a database or Kubernetes client
 *                         certificate never is) → generation: an older one locks the instance
 *                         (generation_mismatch; ARCHITECTURE "renew")
 */
import type { KeyObject } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { parseJws, verifyJws, x5cDers, type Jws, type VerifiedJws } from '../../protocol/jws.js';
import { TYP_REQUEST } from '../../protocol/messages.js';
import { readCertificate } from '../../pki/cert-reader.js';
import { verifyOwnLeaf, type OwnLeaf } from '../../pki/own-leaf.js';
import type { IssuerContext } from '../issuer.js';
import type { CertificateRecord, InstanceRecord, TxStores } from '../store/types.js';

/** The kind recorded for identity certificates (server/ops/issue.ts). */
export const IDENTITY_CERT_KIND = 'x509-svid';

export interface Presented {
  leaf: OwnLeaf;
  /** The presented leaf's DER, as sent (x5c[0]). */
  leafDer: Buffer;
  publicKey: KeyObject;
  instanceId: string;
  bot: string;
  serial: string;
}

/**
 * The presented leaf must be one this issuer signed (pki/own-leaf.ts); its time validity is
 * checked later, after the idempotent replay, so a lost response is still answered.
 */
export function checkPresentedChain(ctx: IssuerContext, ders: Buffer[], op: string): Presented {
  if (ders.length === 0)
    throw new SigilError('chain_invalid', `${op} must carry the current certificate chain in the JWS x5c header`);
  // A leaf of a revoked intermediate is refused by name (issuer_revoked; server/issuers/registry.ts).
  ctx.intermediates?.refuseRevoked(ders);
  // Anything after the leaf must be our own intermediate; say precisely what is wrong otherwise.
  for (const [i, d] of ders.slice(1).entries()) {
    if (ctx.issuingCas.some((c) => c.certDer.equals(d))) continue;
    readCertificate(d, 'bad_certificate', `x5c certificate ${i + 1}`);
    throw new SigilError('chain_invalid', `x5c certificate ${i + 1} is not this issuer's intermediate CA`);
  }
  const leaf = verifyOwnLeaf(ders[0]!, ctx.issuingCas, ctx.issuedLeaves);
  const prefix = `spiffe://${ctx.ca.trustDomain}/bot/`;
  const rest = leaf.spiffeId?.startsWith(prefix) ? leaf.spiffeId.slice(prefix.length).split('/') : [];
  if (rest.length !== 2 || !rest[0] || !rest[1])
    throw new SigilError(
      'chain_invalid',
      `the presented certificate is not a Sigil bot identity of trust domain ${ctx.ca.trustDomain}`,
    );
  // Usually a cache hit: this key came in the CSR of the renewal that issued this leaf. The JWS
  // signature is verified with it all the same (authenticateRequest).
  const publicKey = ctx.publicKeys.publicKey(leaf.fields.spki);
  return { leaf, leafDer: ders[0]!, publicKey, bot: rest[0], instanceId: rest[1], serial: leaf.serial };
}

/** Who signed a request, once both its chain and its signature verified (for carriers: where to answer). */
export interface AuthenticatedSigner {
  instanceId: string;
  bot: string;
  serial: string;
}

export interface OpHooks {
  /**
   * Called once the request's chain AND signature verified, before any other check: the MQTT
   * responder answers only on this instance's response topic (transport/mqtt/responder.ts).
   */
  onAuthenticated?(who: AuthenticatedSigner): void;
}

/** Phase 1: who signed this request (chain + signature); nothing about time or state yet. */
export function authenticateRequest(
  ctx: IssuerContext,
  body: unknown,
  op: string,
  onPresented?: (who: Presented) => void,
  hooks?: OpHooks,
): { who: Presented; jws: Jws; verified: VerifiedJws } {
  const { jws, header } = parseJws(body);
  if (header.typ !== TYP_REQUEST) throw new SigilError('bad_request', `JWS typ must be ${TYP_REQUEST}`);
  const who = checkPresentedChain(ctx, x5cDers(header), op);
  onPresented?.(who);
  const verified = verifyJws(jws, header, who.publicKey);
  hooks?.onAuthenticated?.({ instanceId: who.instanceId, bot: who.bot, serial: who.serial });
  return { who, jws, verified };
}

/**
 * The payload must name the identity that signed it (protocol/messages.ts namedSignerFields).
 * Without this, a payload seen on the way could be re-signed by any other identity: the review
 * of issue #11 got another bot's JWT and swapped a victim's renewal onto its own instance so.
 */
export function checkNamedSigner(who: Presented, named: { instance_id: string; serial: string }): void {
  if (named.instance_id !== who.instanceId) {
    throw new SigilError(
      'signer_mismatch',
      `the request names instance ${named.instance_id} but is signed by instance ${who.instanceId}`,
    );
  }
  if (named.serial !== who.serial) {
    throw new SigilError(
      'signer_mismatch',
      `the request names certificate ${named.serial} but is signed with certificate ${who.serial}`,
    );
  }
}

/** Phase 2: the presented identity is current, its instance and bot usable (see the module comment). */
export async function checkCurrentIdentity(
  ctx: IssuerContext,
  who: Presented,
  timestamp: number,
  now: number,
): Promise<{ inst: InstanceRecord; certRec: CertificateRecord }> {
  const judged = await judgeCurrentIdentity(ctx, ctx.stores, who, timestamp, now);
  if ('current' in judged) return judged.current;
  if (await signedBeforeSuccessor(ctx.stores, judged.stale, timestamp)) throw delayedRequestError(judged.stale);
  // One write: a transaction of its own (store contract).
  await ctx.stores.instances.setLocked(judged.stale.inst.id, true, staleLockReason(judged.stale), now);
  throw staleGenerationError(judged.stale);
}

/**
 * Whether a request presenting the generation just before the current one was signed before the
 * current one was issued: a request that was delayed, not a stolen credential used after the
 * holder moved on. Only renewals are resent idempotently (the outbox); a `credential`,
 * `workload` or `attest` request held back on its way — by a broker, or a slow network — and
 * delivered after the agent renewed would otherwise lock an honest instance (review of issue
 * #16: anyone on the MQTT broker could lock any machine so). Refused either way; only a use of
 * the old key dated after its successor existed, or of an older generation, locks. A thief can
 * date a request back by at most the allowed clock skew, so a use more than that after the
 * renewal still locks.
 */
export async function signedBeforeSuccessor(
  stores: Pick<TxStores, 'certificates'>,
  s: StaleIdentity,
  timestamp: number,
): Promise<boolean> {
  if (s.certRec.generation !== s.inst.generation - 1 || s.inst.currentSerial === null) return false;
  const successor = await stores.certificates.get(s.inst.currentSerial);
  return successor !== undefined && successor.generation === s.inst.generation && timestamp < successor.issuedAt;
}

/** The refusal of a {@link signedBeforeSuccessor} request: the instance is not locked. */
export function delayedRequestError(s: StaleIdentity): SigilError {
  return new SigilError(
    'generation_mismatch',
    `the request was signed with generation ${s.certRec.generation} before generation ${s.inst.generation} was issued (delayed on its way); refused, instance ${s.inst.id} is not locked: the agent asks again with its current identity`,
  );
}

/** A presented identity whose generation is older than its instance's. */
export interface StaleIdentity {
  inst: InstanceRecord;
  certRec: CertificateRecord;
}

/**
 * Phase 2's checks on `stores` (the issuer's, or a write transaction's: renew reads everything
 * once, inside its transaction), in the module comment's order. An older generation is returned
 * as `stale`, not thrown: the caller locks the instance (ARCHITECTURE protocol sketch: a stolen
 * copy or a cloned machine) — or, for a renewal that a concurrent one overtook, only refuses.
 */
export async function judgeCurrentIdentity(
  ctx: IssuerContext,
  stores: TxStores,
  who: Presented,
  timestamp: number,
  now: number,
): Promise<{ current: { inst: InstanceRecord; certRec: CertificateRecord } } | { stale: StaleIdentity }> {
  if (who.leaf.fields.notAfter.getTime() <= now) {
    throw new SigilError(
      'cert_expired',
      `the presented certificate expired at ${who.leaf.fields.notAfter.toISOString()}; the agent must join again`,
    );
  }
  const skew = timestamp - now;
  if (Math.abs(skew) > ctx.skewMs) {
    throw new SigilError(
      'stale_request',
      `request timestamp differs from the issuer's clock by ${Math.round(skew / 1000)} s (allowed ±${ctx.skewMs / 1000} s); check the agent's clock (NTP)`,
    );
  }
  // Three independent reads, asked at once (one round trip's wait on a networked store); the
  // checks below still run, and refuse, in the order the module comment gives.
  const [inst, botLocked, certRec] = await Promise.all([
    stores.instances.get(who.instanceId),
    stores.botLocks.isLocked(who.bot),
    stores.certificates.get(who.serial),
  ]);
  if (!inst || inst.bot !== who.bot)
    throw new SigilError('unknown_instance', `instance ${who.instanceId} is not known to this issuer`);
  if (inst.locked)
    throw new SigilError(
      'instance_locked',
      `instance ${inst.id} is locked (${inst.lockReason ?? 'by an administrator'}); unlock with: sigil ctl --data-dir <issuer-data-dir> unlock ${inst.id}`,
    );
  if (botLocked)
    throw new SigilError(
      'bot_locked',
      `bot "${inst.bot}" is locked; unlock with: sigil ctl --data-dir <issuer-data-dir> unlock ${inst.bot}`,
    );
  if (!certRec || certRec.instanceId !== inst.id || certRec.kind !== IDENTITY_CERT_KIND) {
    throw new SigilError(
      'chain_invalid',
      `certificate serial ${who.serial} is not an identity issued to instance ${inst.id}`,
    );
  }
  // The serial is public (every request's x5c, every answer): the record must also be of THIS
  // key. Otherwise whoever holds a live peer intermediate's key — and nothing else — signs a leaf
  // with a victim's serial and SPIFFE ID around a key of its own and renews the victim's instance
  // at another issuer (review of issue #16; docs/issuers.md "a stolen issuer").
  if (certRec.spkiHash !== who.leaf.spkiHash) {
    throw new SigilError(
      'chain_invalid',
      `certificate serial ${who.serial} of instance ${inst.id} was issued for another key than the presented certificate's`,
    );
  }
  // An older credential used after a newer one was issued: either a stolen copy or a cloned machine.
  if (certRec.generation < inst.generation) return { stale: { inst, certRec } };
  return { current: { inst, certRec } };
}

/** The lock reason recorded for a stale generation. */
export const staleLockReason = (s: StaleIdentity): string =>
  `generation_mismatch: presented generation ${s.certRec.generation}, current ${s.inst.generation}`;

/** The refusal of a stale generation, once the instance is locked: says why and what to do. */
export function staleGenerationError(s: StaleIdentity): SigilError {
  const { inst, certRec } = s;
  return new SigilError(
    'generation_mismatch',
    `stale credential generation ${certRec.generation} presented (current is ${inst.generation}); instance ${inst.id} is now locked. If this is not a stolen credential, inspect with \`sigil ctl --data-dir <issuer-data-dir> instances ls\` and run \`sigil ctl --data-dir <issuer-data-dir> unlock ${inst.id}\``,
  );
}
