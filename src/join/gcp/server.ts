/**
 * The issuer half of the gcp join (wire.ts describes the token). The token's `iss` must be
 * Google's; then per rule, in name order (rule-eval.ts): the signature with the rule's key set
 * (Google's JWKS by default, join/jwt-keyset.ts), `exp`/`iat` within the skew and at most an hour
 * old, `aud` = the rule's audience, the `google.compute_engine` claims, the allow list. The
 * furthest refusal is reported.
 *
 * Stable machine id: `gcp-<instance id>`; canReattest: the VM mints a new token whenever it
 * needs one.
 */
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import { checkAllowList, entryMismatch } from '../allow-match.js';
import type { JoinCaches } from '../caches.js';
import { audienceOf, peekJwt, verifyJwt } from '../jwt-verify.js';
import type { JoinAttestPort } from '../port.js';
import type { ServerJoinMethodEntry } from '../registry.js';
import { firstAcceptingRule } from '../rule-eval.js';
import { readRuleFile } from '../rule-files.js';
import type { AttestInput, Attested, JoinMethodServer } from '../types.js';
import { gcpDescriptor } from './descriptor.js';
import { GCP_ALLOW_FIELDS, gcpRuleSchema, type GcpRule } from './rule.js';
import { computeEngineClaimsSchema, gcpEvidenceSchema, gcpMachineId, GOOGLE_ISSUERS, GOOGLE_JWKS_URL } from './wire.js';

export const GCP_METHOD = 'gcp';
const DEFAULT_SKEW_S = 60;
/** Google's identity tokens live one hour. */
const MAX_AGE_S = 3600;

export class GcpJoinServer implements JoinMethodServer {
  readonly name = GCP_METHOD;

  constructor(private readonly caches: JoinCaches) {}

  async attest(input: AttestInput, port: JoinAttestPort): Promise<Attested> {
    const rules = await port.rules<GcpRule>();
    if (rules.length === 0)
      throw new SigilError(
        'gcp_no_rule',
        'no join_rule with method gcp exists on this issuer (sigil ctl --data-dir <issuer-data-dir> apply -f a rule with gcp.audience and gcp.allow)',
      );
    const { token } = parseWith(gcpEvidenceSchema, input.evidence, 'jwt_invalid', 'gcp evidence');
    const iss = peekJwt(token).claims.iss;
    if (!(GOOGLE_ISSUERS as readonly unknown[]).includes(iss)) {
      throw new SigilError(
        'jwt_issuer_mismatch',
        `the token's issuer ${JSON.stringify(iss ?? null)} is not Google (${GOOGLE_ISSUERS[0]})`,
      );
    }

    const { rule, value: facts } = await firstAcceptingRule(rules, async (r, stage) => {
      const c = r.config;
      const skewS = c.skew ?? DEFAULT_SKEW_S;
      const v = await verifyJwt(token, {
        keys: {
          url: c.jwks_url ?? GOOGLE_JWKS_URL,
          fallbackFile: c.fallback_jwks_file,
          ca: c.ca_file !== undefined ? readRuleFile(this.caches.ruleText, c.ca_file, 'CA file') : undefined,
        },
        cache: this.caches.keySets,
        algorithms: ['RS256'],
        now: input.now,
        skewS,
        maxAgeS: MAX_AGE_S,
      });
      stage.reached(1);
      const aud = audienceOf(v.claims);
      if (!aud.includes(c.audience))
        throw new SigilError(
          'jwt_audience_mismatch',
          `the token's audience ${JSON.stringify(aud)} is not ${JSON.stringify(c.audience)} (join_rule ${r.name}); the agent must ask the metadata server for audience=${c.audience}`,
        );
      stage.reached(2);
      const ce = (v.claims.google as { compute_engine?: unknown } | undefined)?.compute_engine;
      if (ce === undefined)
        throw new SigilError(
          'gcp_claims_missing',
          'the token has no google.compute_engine claims; the agent must ask for format=full (and run on a Compute Engine VM)',
        );
      const claims = parseWith(computeEngineClaimsSchema, ce, 'gcp_claims_missing', 'google.compute_engine claims');
      stage.reached(3);
      const f: Record<string, unknown> = {
        gcp_project_id: claims.project_id,
        ...(claims.project_number !== undefined ? { gcp_project_number: String(claims.project_number) } : {}),
        ...(claims.zone !== undefined ? { gcp_zone: claims.zone } : {}),
        gcp_instance_id: String(claims.instance_id),
        ...(claims.instance_name !== undefined ? { gcp_instance_name: claims.instance_name } : {}),
        // The service account counts only if Google says the address is verified.
        ...(typeof v.claims.email === 'string' && v.claims.email_verified !== false
          ? { gcp_service_account: v.claims.email }
          : {}),
        gcp_token_sub: v.claims.sub,
      };
      const who = `instance ${String(f.gcp_instance_name ?? f.gcp_instance_id)} (project ${claims.project_id}${claims.zone ? `, ${claims.zone}` : ''})`;
      checkAllowList(c.allow, (e) => entryMismatch(e, f, GCP_ALLOW_FIELDS), 'gcp_not_allowed', who, r.name);
      return f;
    });

    return {
      bot: rule.bot,
      machineId: gcpMachineId(String(facts.gcp_instance_id)),
      facts: { ...facts, gcp_rule: rule.name },
      joinRule: rule.name,
      canReattest: true,
    };
  }
}

export const gcpServerMethod: ServerJoinMethodEntry = {
  descriptor: gcpDescriptor,
  ruleSchema: gcpRuleSchema,
  create: (deps) => new GcpJoinServer(deps.caches),
};
