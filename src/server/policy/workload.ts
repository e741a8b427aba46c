/**
 * The `workload` policy resource (issue #17; docs/workload-registration.md): a registration
 * entry that says which processes (selectors, checked by the agent) on which nodes (bots, join
 * rules, instance facts, checked here by the issuer) get which SPIFFE ID.
 *
 *   kind: workload
 *   name: web
 *   spec:
 *     spiffe_id: spiffe://example.org/web
 *     selectors: [unix:uid:1000, systemd:unit:web.service]   # all must match the caller
 *     nodes: { bots: [edge], join_rules: [edge-tpm], facts: { aws_region: eu-west-1 } }
 *     ttl: 1h                  # X.509-SVID lifetime, clamped to 24 h
 *     jwt_ttl: 5m              # JWT-SVID lifetime, clamped to the X.509 one
 *     dns_names: [web.internal]
 *     jwt_audiences: [vault]
 *
 * Validated at `ctl apply` and again, from the stored spec, every time the issuer uses it: the
 * database is not trusted to hold only what apply accepted (a database writer could plant a
 * resource naming the issuer's own SPIFFE ID, which agents accept as the signer of every answer).
 */
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { parseSpiffeId } from '../../pki/spiffe-id.js';
import { audienceSchema, parseSelector, type WorkloadEntryWire } from '../../protocol/workload-messages.js';
import { MAX_TTL_S, MIN_TTL_S, parseDuration } from '../../util/duration.js';
import type { InstanceRecord, Resource, TxStores } from '../store/types.js';

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const nameSchema = z.string().regex(NAME_RE, 'names are 1-63 lowercase letters, digits and dashes');

/** Default JWT-SVID lifetime: short, as bearer tokens should be (SPIRE's default is 5 minutes). */
export const DEFAULT_JWT_TTL_S = 300;
/** Default X.509-SVID lifetime when the entry sets none. */
export const DEFAULT_WORKLOAD_TTL_S = 3600;

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v, 'policy_invalid');
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const selectorSchema = z.string().superRefine((s, ctx) => {
  const r = parseSelector(s);
  if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
});

const spiffeIdSchema = z
  .string()
  .max(2048)
  .superRefine((s, ctx) => {
    try {
      parseSpiffeId(s, 'policy_invalid');
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  });

/** RFC 1123 host names, lower case (SANs are compared as written). */
const dnsNameSchema = z
  .string()
  .regex(
    /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/,
    'must be a lower-case DNS name (RFC 1123 labels)',
  );

/** Instance facts are what join methods verified (docs/attestation.md); only scalars are matched. */
const factValue = z.union([z.string().max(1024), z.number(), z.boolean()]);

/**
 * Facts the agent reports about itself, recorded for the fleet view (ops/agent-facts.ts): the
 * version it says it runs, the carrier it chose. Any enrolled machine can claim any value, so no
 * entry may select nodes by them (review of issue #16: an entry selecting `agent_version` was
 * handed to a machine of another bot that claimed that version).
 */
export const CLAIMED_FACTS: ReadonlySet<string> = new Set(['agent_version', 'transport']);

export const workloadNodesSchema = z
  .strictObject({
    bots: z.array(nameSchema).min(1).max(256).optional(),
    join_rules: z.array(nameSchema).min(1).max(256).optional(),
    facts: z
      .record(z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'fact names are [A-Za-z0-9_.-]'), factValue)
      .refine(
        (f) => !Object.keys(f).some((k) => CLAIMED_FACTS.has(k)),
        `nodes.facts may not name ${[...CLAIMED_FACTS].join(' or ')}: the agent reports those itself, unverified`,
      )
      .optional(),
  })
  .refine(
    (n) => n.bots !== undefined || n.join_rules !== undefined || (n.facts && Object.keys(n.facts).length > 0),
    // An entry for "every node" would hand this identity to every machine of the trust domain.
    'nodes must name at least one of bots, join_rules or facts (an entry never applies to every node)',
  );

export const workloadSpecSchema = z.strictObject({
  spiffe_id: spiffeIdSchema,
  // No selector would mean "every process on the node": refused, as SPIRE refuses it.
  selectors: z.array(selectorSchema).min(1, 'a workload needs at least one selector').max(32),
  nodes: workloadNodesSchema,
  ttl: duration.refine((s) => s >= MIN_TTL_S, `ttl must be at least ${MIN_TTL_S}s`).optional(),
  jwt_ttl: duration.refine((s) => s >= MIN_TTL_S, `jwt_ttl must be at least ${MIN_TTL_S}s`).optional(),
  dns_names: z.array(dnsNameSchema).max(32).optional(),
  jwt_audiences: z.array(audienceSchema).max(16).optional(),
});
export type WorkloadSpec = z.infer<typeof workloadSpecSchema>;

/** Path namespaces Sigil itself issues in: node identities and the issuer's own. */
const RESERVED_FIRST_SEGMENTS = ['bot', 'sigil'];

/**
 * The checks on a workload's SPIFFE ID that need the trust domain (when known) besides its
 * syntax: inside the trust domain (`workload_id_outside_trust_domain`), not the trust domain's
 * own ID (the CA's), and not under `/bot/` (node identities: an agent authenticates with one,
 * server/ops/authenticate.ts) or `/sigil/` (the issuer's `/sigil/issuer`, which agents accept
 * as the signer of every answer, protocol/verify-response.ts) — `workload_id_reserved`.
 * Compared case-insensitively, so `/Bot/…` cannot pass for a node identity to a human or an ACL.
 */
export function checkWorkloadSpiffeId(spiffeId: string, trustDomain: string | undefined, where: string): void {
  const { trustDomain: td, path } = parseSpiffeId(spiffeId, 'policy_invalid');
  if (trustDomain !== undefined && td !== trustDomain)
    throw new SigilError(
      'workload_id_outside_trust_domain',
      `${where}: spiffe_id ${spiffeId} is not in this issuer's trust domain ${trustDomain} (use spiffe://${trustDomain}/…)`,
    );
  const first = path.split('/')[1]?.toLowerCase();
  if (path === '' || (first !== undefined && RESERVED_FIRST_SEGMENTS.includes(first)))
    throw new SigilError(
      'workload_id_reserved',
      `${where}: spiffe_id ${spiffeId} collides with identities Sigil issues itself (the trust domain's own ID, spiffe://${td}/bot/… for nodes, spiffe://${td}/sigil/… for the issuer); choose another path`,
    );
}

/** Validate one spec as `ctl apply` does (schema, then the SPIFFE ID checks); returns it parsed. */
export function validateWorkloadSpec(name: string, spec: unknown, trustDomain: string | undefined): WorkloadSpec {
  const where = `workload ${name}`;
  const r = workloadSpecSchema.safeParse(spec);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const at = issue.path.length ? issue.path.join('.') : '(top level)';
    throw new SigilError('policy_invalid', `${where} spec: ${at}: ${issue.message}`);
  }
  checkWorkloadSpiffeId(r.data.spiffe_id, trustDomain, where);
  return r.data;
}

/** One registration entry, decided: the wire form plus what the issuer signs with. */
export interface WorkloadEntry {
  name: string;
  spec: WorkloadSpec;
  /** The X.509-SVID lifetime asked for (the entry's ttl or the default) and granted (≤ 24 h). */
  requestedTtlS: number;
  ttlS: number;
  jwtTtlS: number;
}

/** A stored resource as an entry, re-validated against this issuer's trust domain (see the module comment). */
export function workloadEntry(rec: Resource, trustDomain: string): WorkloadEntry {
  const spec = validateWorkloadSpec(rec.name, rec.spec, trustDomain);
  const requestedTtlS = spec.ttl ?? DEFAULT_WORKLOAD_TTL_S;
  const ttlS = Math.min(requestedTtlS, MAX_TTL_S);
  return { name: rec.name, spec, requestedTtlS, ttlS, jwtTtlS: Math.min(spec.jwt_ttl ?? DEFAULT_JWT_TTL_S, ttlS) };
}

export function entryWire(e: WorkloadEntry): WorkloadEntryWire {
  return {
    id: e.name,
    spiffe_id: e.spec.spiffe_id,
    selectors: e.spec.selectors,
    ttl_s: e.ttlS,
    dns_names: e.spec.dns_names ?? [],
    jwt_audiences: e.spec.jwt_audiences ?? [],
  };
}

/**
 * The fact each join method records its accepting rule under (join/<method>/server.ts). A token
 * join has no rule (select such nodes by bot); a method missing here cannot be selected by rule.
 */
export const RULE_FACT: Readonly<Record<string, string>> = {
  x509: 'x509_rule',
  tpm: 'tpm_rule',
  aws_iid: 'aws_rule',
  azure: 'azure_rule',
  gcp: 'gcp_rule',
  oidc: 'oidc_rule',
};

/**
 * Whether `e` applies to instance `inst`: every criterion the entry names must hold — its bot is
 * listed; it joined by one of the listed join rules (that rule's method and the rule fact the
 * method recorded); every listed fact equals the instance's. Returns the failing criterion, for
 * the refusal message, or undefined when it applies.
 */
export function unmetNodeCriterion(
  e: WorkloadEntry,
  inst: InstanceRecord,
  ruleMethods: ReadonlyMap<string, string>,
): string | undefined {
  const n = e.spec.nodes;
  if (n.bots && !n.bots.includes(inst.bot)) return `bot ${inst.bot} is not one of [${n.bots.join(', ')}]`;
  if (n.join_rules) {
    const fact = RULE_FACT[inst.joinMethod];
    const joinedBy = fact !== undefined ? inst.facts[fact] : undefined;
    const ok = n.join_rules.some((r) => ruleMethods.get(r) === inst.joinMethod && joinedBy === r);
    if (!ok)
      return `the instance did not join by one of the join rules [${n.join_rules.join(', ')}] (it joined with ${inst.joinMethod}${typeof joinedBy === 'string' ? `, rule ${joinedBy}` : ''})`;
  }
  for (const [k, v] of Object.entries(n.facts ?? {})) {
    // An entry stored before the schema refused claimed facts matches no node by them.
    if (CLAIMED_FACTS.has(k)) return `instance fact ${k} is reported by the agent itself and selects nothing`;
    if (inst.facts[k] !== v) return `instance fact ${k} is not ${JSON.stringify(v)}`;
  }
  return undefined;
}

/** The join rules the entries name, with their methods (for {@link unmetNodeCriterion}). */
export async function ruleMethodsOf(stores: TxStores, entries: readonly WorkloadEntry[]): Promise<Map<string, string>> {
  const names = [...new Set(entries.flatMap((e) => e.spec.nodes.join_rules ?? []))];
  const recs = await Promise.all(names.map((n) => stores.resources.get('join_rule', n)));
  const out = new Map<string, string>();
  recs.forEach((r, i) => {
    const method = r?.spec.method;
    if (typeof method === 'string') out.set(names[i]!, method);
  });
  return out;
}
