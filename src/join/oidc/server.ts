/**
 * The issuer half of the oidc join (wire.ts). The token's `iss` picks the rules that trust that
 * issuer (`jwt_issuer_mismatch` when none does); then per rule, in name order: the signature
 * with the rule's key set (join/jwt-keyset.ts: the provider's JWKS, a static file, or OIDC
 * discovery), `exp`/`nbf`/`iat` within the skew, `aud` = the rule's audience, the `jti` not seen
 * before, and the allow list. The furthest refusal is reported. `commit` records the `jti`
 * inside the issuing transaction, so a token joins once even when two joins race.
 */
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import { checkAllowList, factMatches, type Pattern } from '../allow-match.js';
import type { JoinCaches } from '../caches.js';
import { discoverJwksUri } from '../jwt-discovery.js';
import type { KeySetSource } from '../jwt-keyset.js';
import { checkNotReplayed, jtiOf, recordJti } from '../jwt-replay.js';
import { audienceOf, peekJwt, verifyJwt } from '../jwt-verify.js';
import type { JoinAttestPort, JoinRule } from '../port.js';
import type { ServerJoinMethodEntry } from '../registry.js';
import { firstAcceptingRule } from '../rule-eval.js';
import { readRuleFile } from '../rule-files.js';
import type { AttestInput, Attested, JoinMethodServer } from '../types.js';
import { oidcDescriptor } from './descriptor.js';
import { claimAt, claimByName, PRESETS } from './presets.js';
import { oidcRuleSchema, ruleIssuer, type OidcRule } from './rule.js';
import { oidcEvidenceSchema } from './wire.js';

export const OIDC_METHOD = 'oidc';
const DEFAULT_SKEW_S = 60;

async function keysFor(caches: JoinCaches, r: OidcRule, issuer: string, now: number): Promise<KeySetSource> {
  const ca = r.ca_file !== undefined ? readRuleFile(caches.ruleText, r.ca_file, 'CA file') : undefined;
  if (r.jwks_file !== undefined) return { file: r.jwks_file };
  const url =
    r.jwks_url ?? PRESETS[r.provider].jwksUrl?.(issuer) ?? (await discoverJwksUri(caches.discovery, issuer, ca, now));
  return { url, ca };
}

/**
 * Who vouches for a machine id the token claims (a pod uid): the token issuer, and the key set
 * the rule verifies it with when the rule pins one. `iss` alone does not name a cluster:
 * self-managed clusters often share one (kubeadm's and k3s's default is
 * https://kubernetes.default.svc.cluster.local) and are told apart only by their keys
 * (`jwks_file` / `jwks_url`). Keys rotated in place (the same file or URL) keep the authority.
 */
export function machineIdAuthority(r: OidcRule, issuer: string): string {
  if (r.jwks_file !== undefined) return `${issuer} jwks_file:${r.jwks_file}`;
  if (r.jwks_url !== undefined) return `${issuer} jwks_url:${r.jwks_url}`;
  return issuer;
}

/** Why `entry` does not match the claims, or undefined. */
function mismatch(r: OidcRule, entry: Record<string, unknown>, claims: Record<string, unknown>): string | undefined {
  const fields = PRESETS[r.provider].fields;
  for (const [k, pattern] of Object.entries(entry)) {
    if (k === 'claims' || pattern === undefined) continue;
    const v = claimAt(claims, fields[k]!);
    if (!factMatches(pattern as Pattern, v))
      return `${k} ${v === undefined ? '(absent)' : JSON.stringify(v)} does not match ${JSON.stringify(pattern)}`;
  }
  for (const [name, pattern] of Object.entries((entry.claims ?? {}) as Record<string, Pattern>)) {
    const v = claimByName(claims, name);
    if (!factMatches(pattern, v))
      return `claim ${name} ${v === undefined ? '(absent)' : JSON.stringify(v)} does not match ${JSON.stringify(pattern)}`;
  }
  return undefined;
}

function factsOf(r: JoinRule<OidcRule>, issuer: string, claims: Record<string, unknown>): Record<string, unknown> {
  const f: Record<string, unknown> = { oidc_provider: r.config.provider, oidc_issuer: issuer, oidc_rule: r.name };
  if (typeof claims.sub === 'string') f.oidc_sub = claims.sub;
  for (const [name, path] of Object.entries(PRESETS[r.config.provider].facts)) {
    const v = claimAt(claims, path);
    if (v !== undefined && v !== null && v !== '') f[name] = v;
  }
  return f;
}

export class OidcJoinServer implements JoinMethodServer {
  readonly name = OIDC_METHOD;

  constructor(private readonly caches: JoinCaches) {}

  async attest(input: AttestInput, port: JoinAttestPort): Promise<Attested> {
    const all = await port.rules<OidcRule>();
    if (all.length === 0)
      throw new SigilError(
        'oidc_no_rule',
        'no join_rule with method oidc exists on this issuer (sigil ctl --data-dir <issuer-data-dir> apply -f a rule with oidc.provider, oidc.audience and oidc.allow)',
      );
    const { token } = parseWith(oidcEvidenceSchema, input.evidence, 'jwt_invalid', 'oidc evidence');
    const iss = peekJwt(token).claims.iss;
    const rules = all.filter((r) => ruleIssuer(r.config) === iss);
    if (rules.length === 0) {
      const trusted = [...new Set(all.map((r) => ruleIssuer(r.config)))];
      throw new SigilError(
        'jwt_issuer_mismatch',
        `no oidc join rule trusts the token's issuer ${JSON.stringify(iss ?? null)} (trusted: ${trusted.slice(0, 5).join(', ')}${trusted.length > 5 ? ', …' : ''})`,
      );
    }
    const issuer = String(iss);

    const { rule, value } = await firstAcceptingRule(rules, async (r, stage) => {
      const c = r.config;
      const skewS = c.skew ?? DEFAULT_SKEW_S;
      const v = await verifyJwt(token, {
        keys: await keysFor(this.caches, c, issuer, input.now),
        cache: this.caches.keySets,
        algorithms: c.algorithms ?? ['RS256', 'ES256'],
        now: input.now,
        skewS,
      });
      stage.reached(1);
      const aud = audienceOf(v.claims);
      if (!aud.includes(c.audience))
        throw new SigilError(
          'jwt_audience_mismatch',
          `the token's audience ${JSON.stringify(aud)} is not ${JSON.stringify(c.audience)} (join_rule ${r.name}); request the token for audience ${c.audience}`,
        );
      stage.reached(2);
      const jti = jtiOf(v.claims);
      await checkNotReplayed(port, issuer, jti);
      stage.reached(3);
      const claims = v.claims as Record<string, unknown>;
      const facts = factsOf(r, issuer, claims);
      const who = `the ${c.provider} token for ${JSON.stringify(claims.sub ?? '(no sub)')}`;
      checkAllowList(c.allow, (e) => mismatch(c, e, claims), 'oidc_claims_not_allowed', who, r.name);
      return { facts, jti, exp: Number(v.claims.exp), skewS, machineId: PRESETS[c.provider].machineId?.(claims) };
    });

    return {
      bot: rule.bot,
      ...(value.machineId !== undefined
        ? { machineId: value.machineId, machineIdAuthority: machineIdAuthority(rule.config, issuer) }
        : {}),
      facts: value.facts,
      joinRule: rule.name,
      // The job or pod fetches a fresh token whenever it needs to join again.
      canReattest: true,
      async commit(tx) {
        await recordJti(tx, issuer, value.jti, value.exp, value.skewS);
      },
    };
  }
}

export const oidcServerMethod: ServerJoinMethodEntry = {
  descriptor: oidcDescriptor,
  ruleSchema: oidcRuleSchema,
  create: (deps) => new OidcJoinServer(deps.caches),
};
