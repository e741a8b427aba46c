/**
 * The oidc block of a join rule, one shape for every provider (presets.ts fills the defaults):
 *
 *   kind: join_rule
 *   name: gha-deploy
 *   spec:
 *     method: oidc
 *     bot: deployer
 *     oidc:
 *       provider: github                 # github | gitlab | circleci | kubernetes | generic
 *       audience: sigil.example.com       # required: the token's aud must include it
 *       issuer: https://token.actions.githubusercontent.com   # default for github and gitlab;
 *                                         #   circleci: from organization_id; others: required
 *       organization_id: "…"              # circleci only: your organization id
 *       jwks_url: https://…               # optional: default per provider, else OIDC discovery
 *       jwks_file: /etc/sigil/cluster-jwks.json   # optional: a static key set instead (Kubernetes)
 *       ca_file: /etc/sigil/cluster-ca.pem         # optional: CA for jwks_url / discovery
 *       algorithms: [RS256, ES256]        # optional (default)
 *       skew: 60s                         # optional: for exp/nbf/iat (default 60 s, max 5 min)
 *       allow:                            # required: exact values or globs, per claim
 *         - { repository: "acme/infra", ref: "refs/heads/main", environment: production }
 *         - { repository_owner: acme, claims: { runner_environment: github-hosted } }
 *
 * Each allow entry may use the provider's claim fields (presets.ts) and a `claims:` map of any
 * claim (dotted paths reach into objects). For github and gitlab every entry must name a
 * repository/project, owner/namespace or `sub`: their issuers serve everyone on the platform.
 */
import { z } from 'zod';
import { patternSchema } from '../allow-match.js';
import { MAX_JWT_SKEW_S } from '../jwt-replay.js';
import { ASYMMETRIC_ALGS } from '../jwt-verify.js';
import { absolutePathField, durationField, httpsUrlField } from '../rule-fields.js';
import { OIDC_PROVIDERS, PRESETS } from './presets.js';

const claimsMap = z
  .record(z.string().min(1).max(256), patternSchema)
  .refine((m) => Object.keys(m).length > 0 && Object.keys(m).length <= 32, 'claims needs 1-32 entries');

function entrySchema(provider: (typeof OIDC_PROVIDERS)[number]): z.ZodType<Record<string, unknown>> {
  const preset = PRESETS[provider];
  const shape: Record<string, z.ZodType> = Object.fromEntries(
    Object.keys(preset.fields).map((f) => [f, patternSchema.optional()]),
  );
  return z.strictObject({ ...shape, claims: claimsMap.optional() }).superRefine((e, ctx) => {
    const named = Object.keys(e).filter((k) => (e as Record<string, unknown>)[k] !== undefined);
    if (named.length === 0)
      ctx.addIssue({ code: 'custom', message: 'an allow entry needs at least one claim to match' });
    else if (preset.scopeFields && !named.some((k) => preset.scopeFields!.includes(k))) {
      ctx.addIssue({
        code: 'custom',
        message: `a ${provider} allow entry must name one of ${preset.scopeFields.join(', ')}: the ${provider} issuer signs tokens for everyone on the platform`,
      });
    } else if (
      preset.scopeFields &&
      !named.some(
        (k) =>
          preset.scopeFields!.includes(k) &&
          patternsOf((e as Record<string, unknown>)[k]).every((p) => pinsOwner(k, p)),
      )
    ) {
      ctx.addIssue({
        code: 'custom',
        message: `a ${provider} allow entry must pin an owner in one of ${preset.scopeFields.join(', ')}: a wildcard may follow the first "/" (e.g. "acme/*"), never stand for the owner ("*", "*/app"), and ids take no wildcard — the ${provider} issuer signs tokens for everyone on the platform`,
      });
    }
  });
}

const patternsOf = (v: unknown): string[] => (Array.isArray(v) ? (v as string[]) : typeof v === 'string' ? [v] : []);

/**
 * Whether a pattern of scope field `field` names one owner (account, group) on a shared platform:
 * no wildcard at all in an id or owner field; elsewhere (repository, project or namespace path,
 * `sub`) the first wildcard only after a "/" preceded by text. The review of issue #16 found
 * `repository: "*"` accepted as a scope — it lets every repository on github.com in.
 */
function pinsOwner(field: string, pattern: string): boolean {
  const wild = pattern.search(/[*?]/);
  if (wild === -1) return true;
  if (field.endsWith('_id') || field === 'repository_owner') return false;
  const slash = pattern.indexOf('/');
  return slash > 0 && slash < wild;
}

export const oidcRuleSchema = z
  .strictObject({
    provider: z.enum(OIDC_PROVIDERS),
    audience: z.string().min(1).max(512),
    issuer: httpsUrlField.optional(),
    organization_id: z
      .string()
      .regex(/^[0-9a-fA-F-]{36}$/, 'organization_id is your CircleCI organization id (a UUID)')
      .optional(),
    jwks_url: httpsUrlField.optional(),
    jwks_file: absolutePathField.optional(),
    ca_file: absolutePathField.optional(),
    algorithms: z.array(z.enum(ASYMMETRIC_ALGS)).min(1).max(10).optional(),
    skew: durationField.refine((s) => s <= MAX_JWT_SKEW_S, 'skew is at most 5m').optional(),
    allow: z.array(z.record(z.string(), z.unknown())).min(1, 'allow needs at least one entry').max(1000),
  })
  .superRefine((r, ctx) => {
    const preset = PRESETS[r.provider];
    r.allow.forEach((e, i) => {
      const res = entrySchema(r.provider).safeParse(e);
      if (!res.success)
        for (const iss of res.error.issues)
          ctx.addIssue({
            code: 'custom',
            path: ['allow', i, ...iss.path.map((p) => (typeof p === 'symbol' ? String(p) : p))],
            message: iss.message,
          });
    });
    if (r.provider === 'circleci' && r.organization_id === undefined && r.issuer === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['organization_id'],
        message: 'circleci needs organization_id (or issuer)',
      });
    if (r.provider !== 'circleci' && r.organization_id !== undefined)
      ctx.addIssue({ code: 'custom', path: ['organization_id'], message: 'organization_id is for provider circleci' });
    if (r.issuer === undefined && preset.defaultIssuer?.(r) === undefined && r.provider !== 'circleci')
      ctx.addIssue({
        code: 'custom',
        path: ['issuer'],
        message: `provider ${r.provider} needs issuer (the token's iss)`,
      });
    if (r.jwks_url !== undefined && r.jwks_file !== undefined)
      ctx.addIssue({ code: 'custom', path: ['jwks_file'], message: 'give jwks_url or jwks_file, not both' });
  });
export type OidcRule = z.infer<typeof oidcRuleSchema>;

/** The issuer a rule trusts. */
export function ruleIssuer(r: OidcRule): string {
  return r.issuer ?? PRESETS[r.provider].defaultIssuer!(r)!;
}
