/**
 * `workload` (issue #17; docs/workload-registration.md): a joined agent asks which workload
 * registration entries apply to its node, and for their X.509- and JWT-SVIDs. Signed by its
 * CURRENT identity key, like `credential`. Checks, in order, each with its own code:
 *
 *   openIdentityRequest (./identity-request.ts: chain to our CA, signature by the leaf, payload
 *   shape: bad_request, the payload names that signer: signer_mismatch)
 *   → a JWT over a carrier that is not confidential (MQTT) must name an answer key
 *     (answer_key_required)
 *   → idempotent replay of a known request id, only to the same signer (request_id_conflict)
 *   → checkCurrentIdentity (expiry, clock, instance/bot locks, generation)
 *   → checkAttestationStanding (./attestation.ts: none while the latest attestation failed)
 *   → the entry exists (workload_unknown) and is valid NOW, against this issuer's trust domain
 *     (workload_id_reserved, workload_id_outside_trust_domain: the stored spec is re-checked,
 *     the database is not trusted to hold only what `ctl apply` accepted)
 *   → it applies to THIS instance (workload_not_for_node names the failing criterion): an agent
 *     names an entry, never a SPIFFE ID, and a peer bot asking for another node's workload is
 *     refused here
 *   → x509: the CSR proves possession of its key (bad_csr, csr_signature_invalid, unsupported_key)
 *     jwt: every audience is allowed by the entry (workload_audience_denied)
 *   → sign, then record the SVID (certificates, kind workload-x509-svid / workload-jwt-svid, for
 *     this instance), remember the response and audit — one transaction. A JWT is sealed to the
 *     request's answer key before it is remembered, so a replay is useless to anyone else.
 *
 * Workload X.509-SVIDs have an EMPTY subject (the SAN, critical, carries the SPIFFE ID: X509-SVID
 * §3.1): node SVIDs carry CN=<instance id>, which a broker with `use_identity_as_username` takes
 * as the MQTT user, so a workload SVID with that CN could act as its node on the broker.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { SigilError, toSigilError } from '../../errors.js';
import { answerKeyObject, sealToAnswerKey } from '../../protocol/answer-key.js';
import type { Jws } from '../../protocol/jws.js';
import {
  workloadRequestSchema,
  type WorkloadJwtResult,
  type WorkloadRequest,
  type WorkloadResult,
  type WorkloadX509Result,
} from '../../protocol/workload-messages.js';
import { parseCsr } from '../../pki/csr.js';
import { toPem } from '../../pki/pem.js';
import { randomSerial, serialHex } from '../../pki/serial.js';
import { assertCredentialKindInService, jwtSigner } from '../credentials/authorities.js';
import { keyCheckedReplay } from '../credentials/stored-answer-keys.js';
import type { IssuerContext } from '../issuer.js';
import { entryWire, ruleMethodsOf, unmetNodeCriterion, workloadEntry, type WorkloadEntry } from '../policy/workload.js';
import type { CertificateRecord, InstanceRecord, Stores } from '../store/types.js';
import { checkAttestationStanding } from './attestation.js';
import { checkCurrentIdentity, type OpHooks } from './authenticate.js';
import { openIdentityRequest, type SeenRequest } from './identity-request.js';
import { BACKDATE_MS, RENEW_FRACTION, spkiHash } from './issue.js';
import { auditRefusal } from './refusal.js';
import { recordAnswer, replayIfSeen, signResponse } from './respond.js';

/** The `kind` column of the certificates table for workload SVIDs (listed per instance). */
export const WORKLOAD_X509_KIND = 'workload-x509-svid';
export const WORKLOAD_JWT_KIND = 'workload-jwt-svid';

export interface WorkloadCall {
  hooks?: OpHooks;
  /** The carrier is confidential end to end (HTTPS); default false: a JWT is answered only sealed. */
  confidential?: boolean;
}

/** What was signed: the answer, and the certificate row to record (none for a listing). */
interface Issued {
  result: WorkloadResult;
  record?: CertificateRecord;
  audit: Record<string, unknown>;
}

export async function handleWorkload(
  ctx: IssuerContext,
  body: unknown,
  remote: string | null,
  call: WorkloadCall = {},
): Promise<Jws> {
  const { hooks, confidential = false } = call;
  const seen: SeenRequest<WorkloadRequest> = {};
  try {
    const { who, req, signed } = openIdentityRequest(ctx, body, {
      what: 'workload request',
      schema: workloadRequestSchema,
      seen,
      hooks,
    });
    const answerKey = answerKeyFor(req, confidential);
    if (req.action === 'jwt') assertCredentialKindInService(ctx.credentials, 'jwt');
    const replayOpts = req.action === 'jwt' ? keyCheckedReplay(ctx, 'jwt', req.request_id) : {};

    const replay = await replayIfSeen(ctx, ctx.stores, signed, replayOpts);
    if (replay) return signResponse(ctx, replay);

    const now = ctx.now();
    const { inst } = await checkCurrentIdentity(ctx, who, req.timestamp, now);
    checkAttestationStanding(inst, 'workload');
    const r = req;
    const issued: Issued =
      r.action === 'entries'
        ? await listEntries(ctx, inst)
        : r.action === 'x509'
          ? signX509(ctx, await entryFor(ctx, inst, r.entry), r, inst, now)
          : await signJwt(ctx, await entryFor(ctx, inst, r.entry), r, inst, now, answerKey);

    const payload = await ctx.stores.withWriteTx(async (tx) => {
      const again = await replayIfSeen(ctx, tx, signed, replayOpts);
      if (again) return again;
      if (issued.record) await tx.certificates.insert(issued.record);
      return recordAnswer(ctx, tx, {
        op: 'workload',
        request: signed,
        result: issued.result,
        now,
        audit: { bot: inst.bot, instanceId: inst.id, method: inst.joinMethod, remote, details: issued.audit },
      });
    });
    return signResponse(ctx, payload);
  } catch (err) {
    const e = toSigilError(err);
    await auditRefusal(ctx, 'workload', e, {
      bot: seen.who?.bot ?? null,
      instanceId: seen.who?.instanceId ?? null,
      remote,
      requestId: seen.req?.request_id,
    });
    throw e;
  }
}

/** A JWT-SVID is a bearer secret: over MQTT the broker and other agents read answers (as credential.ts). */
function answerKeyFor(req: WorkloadRequest, confidential: boolean): KeyObject | undefined {
  if (req.action !== 'jwt') return undefined;
  if (req.answer_key) return answerKeyObject(req.answer_key);
  if (!confidential)
    throw new SigilError(
      'answer_key_required',
      'a JWT-SVID over this carrier (MQTT: the broker and its other clients read the answer) must carry answer_key, an ephemeral P-256 public key the token is encrypted to; update the agent',
    );
  return undefined;
}

async function allEntries(stores: Stores, ctx: IssuerContext): Promise<WorkloadEntry[]> {
  const out: WorkloadEntry[] = [];
  for (const rec of await stores.resources.list('workload')) {
    try {
      out.push(workloadEntry(rec, ctx.ca.trustDomain));
    } catch (e) {
      // Not served, and said loudly: only a database write that bypassed `ctl apply` gets here.
      ctx.log.error({ workload: rec.name, err: e }, 'stored workload entry is not valid; not serving it');
    }
  }
  return out;
}

async function listEntries(ctx: IssuerContext, inst: InstanceRecord): Promise<Issued> {
  const entries = await allEntries(ctx.stores, ctx);
  const rules = await ruleMethodsOf(ctx.stores, entries);
  const mine = entries.filter((e) => unmetNodeCriterion(e, inst, rules) === undefined);
  return {
    result: { action: 'entries', trust_domain: ctx.ca.trustDomain, entries: mine.map(entryWire) },
    audit: { action: 'entries', entries: mine.map((e) => e.name) },
  };
}

/** The named entry, valid now and applying to this instance (see the module comment). */
async function entryFor(ctx: IssuerContext, inst: InstanceRecord, name: string): Promise<WorkloadEntry> {
  const rec = await ctx.stores.resources.get('workload', name);
  if (!rec) throw new SigilError('workload_unknown', `no workload registration entry "${name}"`);
  const entry = workloadEntry(rec, ctx.ca.trustDomain);
  const unmet = unmetNodeCriterion(entry, inst, await ruleMethodsOf(ctx.stores, [entry]));
  if (unmet !== undefined)
    throw new SigilError(
      'workload_not_for_node',
      `workload entry "${name}" does not apply to instance ${inst.id}: ${unmet}`,
    );
  return entry;
}

function signX509(
  ctx: IssuerContext,
  entry: WorkloadEntry,
  req: Extract<WorkloadRequest, { action: 'x509' }>,
  inst: InstanceRecord,
  now: number,
): Issued {
  // Proof of possession: parseCsr verifies the CSR's self-signature and the key's type and size.
  // Its subject and extensions are ignored: the entry decides every name.
  const { spkiDer } = parseCsr(req.csr);
  const serial = randomSerial();
  const notBefore = now - BACKDATE_MS;
  const notAfter = now + entry.ttlS * 1000;
  let der: Buffer;
  try {
    der = ctx.engine.issueSvid({
      serial,
      spkiDer,
      spiffeId: entry.spec.spiffe_id,
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      subject: [],
      dnsNames: entry.spec.dns_names ?? [],
    });
  } catch (e) {
    if (e instanceof SigilError) throw e;
    throw new SigilError('internal', 'workload certificate signing failed', { cause: e });
  }
  const serialStr = serialHex(serial);
  const result: WorkloadX509Result = {
    action: 'x509',
    entry: entry.name,
    spiffe_id: entry.spec.spiffe_id,
    serial: serialStr,
    chain: [toPem('CERTIFICATE', der), ctx.ca.intermediatePem.trim() + '\n'],
    bundle: [ctx.ca.rootPem.trim() + '\n'],
    not_before: notBefore,
    not_after: notAfter,
    ttl_s: entry.ttlS,
    requested_ttl_s: entry.requestedTtlS,
    ttl_clamped: entry.ttlS !== entry.requestedTtlS,
    renew_after: now + Math.round(entry.ttlS * 1000 * RENEW_FRACTION),
  };
  return {
    result,
    record: record(inst, req.request_id, now, {
      serial: serialStr,
      kind: WORKLOAD_X509_KIND,
      notBefore,
      notAfter,
      keyHash: spkiHash(spkiDer),
    }),
    audit: {
      action: 'x509',
      entry: entry.name,
      spiffe_id: entry.spec.spiffe_id,
      serial: serialStr,
      ttl_s: entry.ttlS,
      ttl_clamped: result.ttl_clamped,
    },
  };
}

async function signJwt(
  ctx: IssuerContext,
  entry: WorkloadEntry,
  req: Extract<WorkloadRequest, { action: 'jwt' }>,
  inst: InstanceRecord,
  now: number,
  answerKey: KeyObject | undefined,
): Promise<Issued> {
  const allowed = entry.spec.jwt_audiences ?? [];
  const denied = req.audience.filter((a) => !allowed.includes(a));
  if (denied.length > 0)
    throw new SigilError(
      'workload_audience_denied',
      `workload entry "${entry.name}" does not allow JWT-SVID audience ${denied.map((a) => JSON.stringify(a)).join(', ')} (allowed: ${allowed.length ? allowed.join(', ') : 'none'})`,
    );
  if (!ctx.publicUrl)
    throw new SigilError(
      'unavailable',
      'this issuer has no public URL configured yet, so it cannot issue JWT-SVIDs (sigil server start --public-url)',
    );
  const audience = [...new Set(req.audience)];
  const jti = randomBytes(16).toString('hex');
  const notBefore = now - BACKDATE_MS;
  const expiresAt = now + entry.jwtTtlS * 1000;
  const signer = jwtSigner(ctx.credentials);
  const token = signer.sign({
    iss: ctx.publicUrl,
    sub: entry.spec.spiffe_id,
    aud: audience.length === 1 ? audience[0]! : audience,
    iat: Math.floor(now / 1000),
    nbf: Math.floor(notBefore / 1000),
    exp: Math.floor(expiresAt / 1000),
    jti,
    sigil_bot: inst.bot,
    sigil_instance: inst.id,
  });
  const result: WorkloadJwtResult = {
    action: 'jwt',
    entry: entry.name,
    spiffe_id: entry.spec.spiffe_id,
    serial: jti,
    audience,
    ...(answerKey ? { token_jwe: await sealToAnswerKey(token, answerKey, 'JWT') } : { token }),
    issued_at_s: Math.floor(now / 1000),
    expires_at: Math.floor(expiresAt / 1000) * 1000,
    issuer_url: ctx.publicUrl,
  };
  return {
    result,
    record: record(inst, req.request_id, now, {
      serial: jti,
      kind: WORKLOAD_JWT_KIND,
      notBefore,
      notAfter: expiresAt,
      keyHash: `kid:${signer.kid}`,
    }),
    audit: { action: 'jwt', entry: entry.name, spiffe_id: entry.spec.spiffe_id, serial: jti, audiences: audience },
  };
}

function record(
  inst: InstanceRecord,
  requestId: string,
  now: number,
  c: { serial: string; kind: string; notBefore: number; notAfter: number; keyHash: string },
): CertificateRecord {
  return {
    serial: c.serial,
    instanceId: inst.id,
    bot: inst.bot,
    generation: inst.generation,
    notBefore: c.notBefore,
    notAfter: c.notAfter,
    kind: c.kind,
    // The agent makes workload keys; nothing here proves where they live.
    keyStorage: 'software',
    exportable: true,
    spkiHash: c.keyHash,
    requestId,
    issuedAt: now,
  };
}
