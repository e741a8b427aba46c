/**
 * `join`: verify the envelope (signed by the key in its CSR — proof of possession), replay an
 * already answered request id, check a `transport_csr` if there is one (./transport-cert.ts),
 * open the challenge an answer names, let the join method attest the evidence (or answer with
 * its challenge, ./challenge.ts), then in one transaction use up the challenge and the
 * method's single-use evidence, create or re-use the instance and issue.
 */
import { randomUUID } from 'node:crypto';
import { SigilError, toSigilError } from '../../errors.js';
import { b64u, parseJws, verifyJws, type Jws } from '../../protocol/jws.js';
import { checkVersion, parseWith, TYP_REQUEST } from '../../protocol/messages.js';
import { joinRequestSchema, type JoinRequest } from '../../protocol/requests.js';
import { isChallengeAnswer } from '../../join/challenge.js';
import type { JoinMethods } from '../../join/server-methods.js';
import { isChallengeRequired } from '../../join/types.js';
import { parseCsr, type ParsedCsr } from '../../pki/csr.js';
import type { IssuerContext } from '../issuer.js';
import { resolveBot } from '../policy/resources.js';
import { consumeChallenge, issueChallenge, openChallenge } from './challenge.js';
import { issueIdentity, spiffeIdFor, spkiHash } from './issue.js';
import { attestPort, commitPort } from './join-port.js';
import { recordAnswer, replayIfSeen, signedRequest, signResponse } from './respond.js';
import { auditRefusal } from './refusal.js';
import { checkTransportCsr } from './transport-cert.js';
import { agentFactsUpdate, type Carrier } from './agent-facts.js';

/**
 * A join with a challenge round sends the same CSR twice (join/exchange.ts); the parse and
 * self-signature check of the first request is reused for the answer (keyed by the exact
 * CSR text, so nothing else can hit). Bounded; oldest entry evicted. The memo belongs to the
 * issuer's join methods (join/server-methods.ts JoinMethods), not to the module.
 */
const MAX_RECENT_CSRS = 64;

function parseJoinCsr(methods: JoinMethods, text: string): ParsedCsr {
  const recentCsrs = methods.recentCsrs;
  const hit = recentCsrs.get(text);
  if (hit) return hit;
  const csr = parseCsr(text);
  if (recentCsrs.size >= MAX_RECENT_CSRS) recentCsrs.delete(recentCsrs.keys().next().value!);
  recentCsrs.set(text, csr);
  return csr;
}

/** The instance fact recording who vouched for a claimed machine id (join/types.ts Attested.machineIdAuthority). */
export const MACHINE_ID_AUTHORITY = 'machine_id_authority';

export async function handleJoin(
  ctx: IssuerContext,
  body: unknown,
  remote: string | null,
  /** The carrier the request came on (server/ops/table.ts), recorded for the fleet view. */
  carrier?: Carrier,
): Promise<Jws> {
  const started = process.hrtime.bigint();
  let req: JoinRequest | undefined;
  let botName: string | undefined;
  try {
    const { jws, header } = parseJws(body);
    if (header.typ !== TYP_REQUEST) throw new SigilError('bad_request', `JWS typ must be ${TYP_REQUEST}`);
    let unverified: unknown;
    try {
      unverified = JSON.parse(b64u.decode(jws.payload).toString('utf8'));
    } catch {
      throw new SigilError('bad_request', 'JWS payload is not JSON');
    }
    checkVersion(unverified);
    req = parseWith(joinRequestSchema, unverified, 'bad_request', 'join request');
    const csr = parseJoinCsr(ctx.methods, req.csr);
    // The envelope must be signed by the very key being certified.
    const verified = verifyJws(jws, header, csr.publicKey);
    // A join is signed by the key it asks to certify: that key is the signer a replay must match.
    const signed = signedRequest(jws, verified.payloadBytes, req.request_id, { keyHash: spkiHash(csr.spkiDer) });

    const replay = await replayIfSeen(ctx, ctx.stores, signed);
    if (replay) return signResponse(ctx, replay);

    const skew = req.timestamp - ctx.now();
    if (Math.abs(skew) > ctx.skewMs) {
      throw new SigilError(
        'stale_request',
        `request timestamp differs from the issuer's clock by ${Math.round(skew / 1000)} s (allowed ±${ctx.skewMs / 1000} s); check the agent's clock (NTP)`,
      );
    }
    // Before the method runs: a bad transport CSR is refused before any evidence is spent.
    const transportSpkiDer =
      req.transport_csr !== undefined ? checkTransportCsr(req.transport_csr, [csr.spkiDer]) : undefined;
    const built = ctx.methods.get(req.method);
    if (!built)
      throw new SigilError(
        'unknown_join_method',
        `join method "${req.method}" is not enabled on this issuer (enabled: ${ctx.methods.names().join(', ')})`,
      );
    const method = built.server;
    const now = ctx.now();
    // The challenge lifecycle is the host's (join/challenge.ts): an answer's challenge is opened
    // here, before the method sees the answer, and used up below in the issuing transaction.
    const challenge = isChallengeAnswer(req.evidence)
      ? await openChallenge(ctx.stores.challenges, req.evidence.challenge_id, {
          method: method.name,
          requestId: req.request_id,
          spkiDer: csr.spkiDer,
          now,
        })
      : undefined;
    const input = {
      evidence: req.evidence,
      requestId: req.request_id,
      spkiDer: csr.spkiDer,
      now,
      remote,
      ...(challenge ? { challenge } : {}),
    };
    const step = await method.attest(input, attestPort(ctx.stores, built, ctx.now, ctx.log));
    // A method with a challenge round (x509, tpm, azure) first asks the agent to answer a challenge.
    if (isChallengeRequired(step))
      return await issueChallenge(ctx, method.name, req.request_id, csr.spkiDer, step.challenge);
    const att = step;
    botName = att.bot;
    const bot = await resolveBot(ctx.stores, att.bot);
    if (await ctx.stores.botLocks.isLocked(bot.name))
      throw new SigilError(
        'bot_locked',
        `bot "${bot.name}" is locked; unlock with: sigil ctl --data-dir <issuer-data-dir> unlock ${bot.name}`,
      );
    const r = req;
    // What the method proved about the key (tpm: TPM2_Certify); an unproven claim counts for nothing.
    const keyStorage = att.keyStorage ?? 'software';
    const exportable = att.keyStorage === undefined ? true : (att.exportable ?? true);

    const payload = await ctx.stores.withWriteTx(async (tx) => {
      // Re-check inside the write lock: two copies of one request racing each other.
      const again = await replayIfSeen(ctx, tx, signed);
      if (again) return again;
      const existing = att.machineId ? await tx.instances.get(att.machineId) : undefined;
      const instanceId = existing?.id ?? att.machineId ?? randomUUID();
      // Single-use evidence is used up inside the transaction: a refusal after this (a locked
      // instance, the issue itself) rolls the use back, so it burns nothing.
      if (challenge) await consumeChallenge(tx.challenges, challenge.id, now);
      await att.commit?.(commitPort(tx, built, now, instanceId));
      // The fleet view's transport and agent version (./agent-facts.ts), after the method's facts:
      // what the issuer saw wins over a same-named fact. Written with the facts, no extra statement.
      const seen = agentFactsUpdate(existing?.facts ?? {}, { carrier, agentVersion: r.agent_version });
      const vouched = att.machineIdAuthority === undefined ? {} : { [MACHINE_ID_AUTHORITY]: att.machineIdAuthority };
      const facts = { ...att.facts, ...vouched, ...seen };
      if (existing) {
        if (existing.locked)
          throw new SigilError(
            'instance_locked',
            `instance ${existing.id} is locked (${existing.lockReason ?? 'by an administrator'})`,
          );
        // A re-join continues the same machine: the same join method, and the same bot — unless
        // the very rule that joined it now names another bot (an administrator's change). Evidence
        // that maps to an existing machine id through ANOTHER rule of another bot — a second
        // Kubernetes cluster naming a pod uid of the first, say — must not take the instance
        // over, bump its generation (its holder would then be locked as a stolen copy) and
        // rewrite its facts (review of issue #16).
        const joinedBy = existing.facts[`${existing.joinMethod}_rule`];
        if (
          existing.joinMethod !== method.name ||
          (existing.bot !== bot.name && (att.joinRule === undefined || joinedBy !== att.joinRule))
        )
          throw new SigilError(
            'instance_conflict',
            `machine id ${existing.id} is an instance of bot "${existing.bot}" joined by ${existing.joinMethod}${typeof joinedBy === 'string' ? ` (join_rule ${joinedBy})` : ''}; this join (bot "${bot.name}", ${method.name}${att.joinRule ? `, join_rule ${att.joinRule}` : ''}) may not take it over`,
          );
        // A claimed machine id (a pod uid) vouched for by another authority — a second cluster
        // mapped to the SAME bot naming a pod of the first — is someone else's claim about this
        // machine, not a re-join of it. (Instances from before the authority was recorded take it
        // from their next re-join.)
        const vouchedBy = existing.facts[MACHINE_ID_AUTHORITY];
        if (
          att.machineIdAuthority !== undefined &&
          typeof vouchedBy === 'string' &&
          vouchedBy !== att.machineIdAuthority
        )
          throw new SigilError(
            'instance_conflict',
            `machine id ${existing.id} was joined on the word of ${vouchedBy}; this join names it on the word of ${att.machineIdAuthority} (join_rule ${att.joinRule ?? '?'}), which may not take it over`,
          );
        await tx.instances.updateFacts(existing.id, facts, now);
      } else {
        await tx.instances.create({
          id: instanceId,
          bot: bot.name,
          joinMethod: method.name,
          spiffeId: spiffeIdFor(ctx.ca.trustDomain, bot.name, instanceId),
          generation: 0,
          facts,
          keyStorage,
          exportable,
          createdAt: now,
        });
      }
      const { result, transportSerial } = await issueIdentity(ctx, tx, {
        op: 'join',
        requestId: r.request_id,
        instanceId,
        bot,
        spkiDer: csr.spkiDer,
        requestedTtlS: r.ttl_s,
        generation: (existing?.generation ?? 0) + 1,
        keyStorage,
        exportable,
        ...(transportSpkiDer ? { transportSpkiDer } : {}),
      });
      return recordAnswer(ctx, tx, {
        op: 'join',
        request: signed,
        result,
        now,
        audit: {
          bot: bot.name,
          instanceId,
          method: method.name,
          remote,
          details: {
            serial: result.serial,
            spiffe_id: result.spiffe_id,
            generation: result.generation,
            ttl_s: result.ttl_s,
            ttl_clamped: result.ttl_clamped,
            rejoin: existing !== undefined,
            key_storage: result.key_storage,
            exportable: result.exportable,
            ...(transportSerial ? { transport_serial: transportSerial } : {}),
            ...att.facts,
          },
        },
      });
    });
    ctx.metrics.joins.inc({ method: method.name });
    ctx.metrics.issuance.observe(Number(process.hrtime.bigint() - started) / 1e9);
    return signResponse(ctx, payload);
  } catch (err) {
    const e = toSigilError(err);
    await auditRefusal(ctx, 'join', e, {
      method: req?.method ?? null,
      bot: botName ?? null,
      remote,
      requestId: req?.request_id,
    });
    throw e;
  }
}
