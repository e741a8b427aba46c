/**
 * What Sigil knows about each OIDC token issuer: its default issuer URL and key set, the
 * claims allow entries may name, the claims recorded as facts (audit, instance), and, where
 * the token names a long-lived workload, a stable machine id.
 *
 * Sources: GitHub Actions "About security hardening with OpenID Connect" (token claims),
 * GitLab "OpenID Connect (OIDC) authentication using ID tokens" (id_tokens claims), CircleCI
 * "Using OpenID Connect tokens in jobs", Kubernetes "Service account token volume projection"
 * and the bound token claims (`kubernetes.io`).
 */
export const OIDC_PROVIDERS = ['github', 'gitlab', 'circleci', 'kubernetes', 'generic'] as const;
export type OidcProvider = (typeof OIDC_PROVIDERS)[number];

/** A claim: the keys from the top level down (claim names may contain dots). */
export type ClaimPath = readonly string[];

export interface Preset {
  /** The issuer when the rule gives none; undefined: the rule must give one. */
  defaultIssuer?: (rule: { organization_id?: string | undefined }) => string | undefined;
  /** The key set URL for an issuer; undefined: OIDC discovery. */
  jwksUrl?: (issuer: string) => string;
  /** Allow-entry field → claim. */
  fields: Record<string, ClaimPath>;
  /** An allow entry must name at least one of these (the issuer serves everyone). */
  scopeFields?: readonly string[];
  /** Fact name → claim, recorded when present. */
  facts: Record<string, ClaimPath>;
  machineId?: (claims: Record<string, unknown>) => string | undefined;
}

const top = (...names: string[]): Record<string, ClaimPath> => Object.fromEntries(names.map((n) => [n, [n]]));
const prefixed = (prefix: string, fields: Record<string, ClaimPath>, names: string[]): Record<string, ClaimPath> =>
  Object.fromEntries(names.map((n) => [`${prefix}_${n}`, fields[n]!]));

/** A value at `path`, or undefined. */
export function claimAt(claims: Record<string, unknown>, path: ClaimPath): unknown {
  let v: unknown = claims;
  for (const k of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.prototype.hasOwnProperty.call(v, k))
      return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/**
 * A claim named in a rule's `claims:` map: the exact top-level name first (CircleCI's
 * "oidc.circleci.com/project-id" has dots), else a dotted path whose segments may themselves
 * contain dots ("kubernetes.io.namespace" → ["kubernetes.io", "namespace"]), longest match first.
 */
export function claimByName(claims: Record<string, unknown>, name: string): unknown {
  if (Object.prototype.hasOwnProperty.call(claims, name)) return claims[name];
  const keys = Object.keys(claims)
    .filter((k) => name.startsWith(`${k}.`))
    .sort((a, b) => b.length - a.length);
  for (const k of keys) {
    const v = claims[k];
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const inner = claimByName(v as Record<string, unknown>, name.slice(k.length + 1));
      if (inner !== undefined) return inner;
    }
  }
  return undefined;
}

const github = top(
  'sub',
  'repository',
  'repository_id',
  'repository_owner',
  'repository_owner_id',
  'repository_visibility',
  'ref',
  'ref_type',
  'workflow',
  'workflow_ref',
  'job_workflow_ref',
  'environment',
  'event_name',
  'actor',
  'runner_environment',
);
const gitlab = top(
  'sub',
  'project_path',
  'project_id',
  'namespace_path',
  'namespace_id',
  'ref',
  'ref_type',
  'ref_protected',
  'pipeline_source',
  'environment',
  'environment_protected',
  'user_login',
);
const circleci: Record<string, ClaimPath> = {
  sub: ['sub'],
  project_id: ['oidc.circleci.com/project-id'],
  context_id: ['oidc.circleci.com/context-ids'],
  vcs_origin: ['oidc.circleci.com/vcs-origin'],
  vcs_ref: ['oidc.circleci.com/vcs-ref'],
};
const kubernetes: Record<string, ClaimPath> = {
  sub: ['sub'],
  namespace: ['kubernetes.io', 'namespace'],
  service_account: ['kubernetes.io', 'serviceaccount', 'name'],
  pod: ['kubernetes.io', 'pod', 'name'],
  node: ['kubernetes.io', 'node', 'name'],
};

export const PRESETS: Record<OidcProvider, Preset> = {
  github: {
    defaultIssuer: () => 'https://token.actions.githubusercontent.com',
    jwksUrl: (iss) => `${iss.replace(/\/+$/, '')}/.well-known/jwks`,
    fields: github,
    scopeFields: ['repository', 'repository_id', 'repository_owner', 'repository_owner_id', 'sub'],
    facts: {
      ...prefixed('github', github, [
        'repository',
        'repository_owner',
        'ref',
        'workflow',
        'job_workflow_ref',
        'environment',
        'event_name',
        'actor',
      ]),
      github_run_id: ['run_id'],
      github_run_attempt: ['run_attempt'],
      github_sha: ['sha'],
    },
  },
  gitlab: {
    defaultIssuer: () => 'https://gitlab.com',
    jwksUrl: (iss) => `${iss.replace(/\/+$/, '')}/oauth/discovery/keys`,
    fields: gitlab,
    scopeFields: ['project_path', 'project_id', 'namespace_path', 'namespace_id', 'sub'],
    facts: {
      ...prefixed('gitlab', gitlab, [
        'project_path',
        'namespace_path',
        'ref',
        'ref_type',
        'pipeline_source',
        'environment',
        'user_login',
      ]),
      gitlab_pipeline_id: ['pipeline_id'],
      gitlab_job_id: ['job_id'],
    },
  },
  circleci: {
    // One issuer per organization: the organization is pinned by the issuer itself.
    defaultIssuer: (r) =>
      r.organization_id !== undefined ? `https://oidc.circleci.com/org/${r.organization_id}` : undefined,
    jwksUrl: (iss) => `${iss.replace(/\/+$/, '')}/.well-known/jwks-pub.json`,
    fields: circleci,
    facts: {
      ...prefixed('circleci', circleci, ['project_id', 'context_id', 'vcs_origin', 'vcs_ref']),
      circleci_sub: ['sub'],
    },
  },
  kubernetes: {
    fields: kubernetes,
    facts: {
      ...prefixed('k8s', kubernetes, ['namespace', 'service_account', 'pod', 'node']),
      k8s_pod_uid: ['kubernetes.io', 'pod', 'uid'],
    },
    // A pod re-joins at every renewal; its uid keeps it one instance for its whole life.
    machineId: (c) => {
      const uid = claimAt(c, ['kubernetes.io', 'pod', 'uid']);
      return typeof uid === 'string' && /^[0-9a-f-]{36}$/i.test(uid) ? `k8s-${uid.toLowerCase()}` : undefined;
    },
  },
  generic: {
    fields: { sub: ['sub'] },
    facts: {},
  },
};
