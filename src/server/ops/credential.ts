/**
 * `credential`: a joined agent asks for an SSH, database, Kubernetes or JWT credential, signed
 * by its CURRENT identity key (x5c = its chain). Checks, in order, each with its own code:
 *
 *   openIdentityRequest (./identity-request.ts: envelope, chain to our CA, signature by the leaf,
 *   payload shape: bad_request, the payload names that signer — instance id and certificate
 *   serial: signer_mismatch)
 *   → fields that do not apply to the kind are refused (bad_request)
 *   → a secret (JWT) asked for over a carrier that is not confidential (MQTT) must name the
 *     key to encrypt it to (answer_key_required); a named key must be a P-256 point (bad_request)
 *   → idempotent replay of a known request id, only to the same signer (the stored answer,
 *     even after expiry; another signer: request_id_conflict)
 *   → checkCurrentIdentity (expiry, clock, instance/bot locks, generation)
 *   → checkAttestationStanding (./attestation.ts: none while the latest attestation failed)
 *   → the bot's roles decide (policy/credentials.ts; role_denied names role and rule)
 *   → sign (credentials/issue-credential.ts) and seal the secret to answer_key
 *     (protocol/answer-key.ts), then record, remember the response, audit — one transaction.
 *     The remembered response is the sealed one: an idempotent replay goes only to the same
 *     signer with the same signed request (same answer_key), and is useless to anyone else.
 */
import { SigilError, toSigilError } from '../../errors.js';
import type { KeyObject } from 'node:crypto';
import { answerKeyObject, sealToAnswerKey } from '../../protocol/answer-key.js';
import {
  credentialRequestSchema,
  KIND_FIELDS,
  KIND_SPECIFIC_FIELDS,
  SECRET_KINDS,
  type CredentialRequest,
  type CredentialResult,
} from '../../protocol/credential-messages.js';
import type { Jws } from '../../protocol/jws.js';
import { assertCredentialKindInService } from '../credentials/authorities.js';
import { keyCheckedReplay } from '../credentials/stored-answer-keys.js';
import { issueCredential } from '../credentials/issue-credential.js';
import type { IssuerContext } from '../issuer.js';
import { decideCredential } from '../policy/credentials.js';
import { checkAttestationStanding } from './attestation.js';
import { checkCurrentIdentity, type OpHooks } from './authenticate.js';
import { openIdentityRequest, type SeenRequest } from './identity-request.js';
import { auditRefusal } from './refusal.js';
import { recordAnswer, replayIfSeen, signResponse } from './respond.js';

function checkFieldsForKind(req: CredentialRequest): void {
  const allowed = KIND_FIELDS[req.kind];
  for (const f of KIND_SPECIFIC_FIELDS) {
    if (req[f] !== undefined && !allowed.includes(f)) {
      const hint =
        f === 'public_key' && allowed.includes('csr')
          ? ' (send csr: a PKCS#10 request signed by the key proves possession of it)'
          : '';
      throw new SigilError('bad_request', `credential request: ${f} does not apply to kind ${req.kind}${hint}`);
    }
  }
}

/**
 * A JWT sent in clear over MQTT is a bearer secret handed to the broker and to every agent that
 * may read response topics (a signature does not hide it). So there the request must say whom
 * to encrypt it to.
 */
function answerKeyFor(req: CredentialRequest, confidential: boolean): KeyObject | undefined {
  if (req.answer_key) return answerKeyObject(req.answer_key);
  if (!confidential && SECRET_KINDS.has(req.kind)) {
    throw new SigilError(
      'answer_key_required',
      `a ${req.kind} credential over this carrier (MQTT: the broker and its other clients read the answer) must carry answer_key, an ephemeral P-256 public key the secret is encrypted to; update the agent`,
    );
  }
  return undefined;
}

/** The secret part of a result, encrypted to the requester's answer key (token → token_jwe). */
async function sealSecrets(result: CredentialResult, key: KeyObject | undefined): Promise<CredentialResult> {
  if (!key || result.token === undefined) return result;
  const { token, ...rest } = result;
  return { ...rest, token_jwe: await sealToAnswerKey(token, key, 'JWT') };
}

export interface CredentialCall {
  hooks?: OpHooks;
  /**
   * The carrier is confidential end to end (HTTPS to the pinned CA); default false, the safe
   * side: a secret is then only answered sealed (server/ops/table.ts OpRequest).
   */
  confidential?: boolean;
}

export async function handleCredential(
  ctx: IssuerContext,
  body: unknown,
  remote: string | null,
  call: CredentialCall = {},
): Promise<Jws> {
  const { hooks, confidential = false } = call;
  const seen: SeenRequest<CredentialRequest> = {};
  try {
    const { who, req, signed } = openIdentityRequest(ctx, body, {
      what: 'credential request',
      schema: credentialRequestSchema,
      seen,
      hooks,
    });
    checkFieldsForKind(req);
    const answerKey = answerKeyFor(req, confidential);
    assertCredentialKindInService(ctx.credentials, req.kind);
    const replayOpts = keyCheckedReplay(ctx, req.kind, req.request_id);

    const replay = await replayIfSeen(ctx, ctx.stores, signed, replayOpts);
    if (replay) return signResponse(ctx, replay);

    const now = ctx.now();
    const { inst } = await checkCurrentIdentity(ctx, who, req.timestamp, now);
    checkAttestationStanding(inst, 'credential');
    const grant = await decideCredential(ctx.stores, inst.bot, {
      kind: req.kind,
      ttlS: req.ttl_s,
      logins: req.logins,
      principals: req.principals,
      dbUser: req.db_user,
      kubernetesUser: req.kubernetes_user,
      kubernetesGroups: req.kubernetes_groups,
      audiences: req.audiences,
    });

    // Signed and sealed before the transaction, which stays short (every other writer waits for
    // it); if a concurrent copy of this request commits first, this credential is dropped unseen
    // and the stored answer wins.
    const issued = issueCredential(ctx, { grant, req, inst, now });
    const result = await sealSecrets(issued.result, answerKey);
    const payload = await ctx.stores.withWriteTx(async (tx) => {
      const again = await replayIfSeen(ctx, tx, signed, replayOpts);
      if (again) return again;
      await tx.certificates.insert(issued.record);
      return recordAnswer(ctx, tx, {
        op: 'credential',
        request: signed,
        result,
        now,
        audit: {
          bot: inst.bot,
          instanceId: inst.id,
          method: inst.joinMethod,
          remote,
          details: {
            kind: result.kind,
            serial: result.serial,
            role: result.role,
            ttl_s: result.ttl_s,
            ttl_clamped: result.ttl_clamped,
            ...(result.principals ? { principals: result.principals } : {}),
            ...(result.common_name ? { common_name: result.common_name, organizations: result.organizations } : {}),
            ...(result.audiences ? { audiences: result.audiences } : {}),
          },
        },
      });
    });
    return signResponse(ctx, payload);
  } catch (err) {
    const e = toSigilError(err);
    await auditRefusal(ctx, 'credential', e, {
      bot: seen.who?.bot ?? null,
      instanceId: seen.who?.instanceId ?? null,
      remote,
      requestId: seen.req?.request_id,
    });
    throw e;
  }
}
