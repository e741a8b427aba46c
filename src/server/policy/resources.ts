/**
 * Policy resources (`role`, `bot`, `join_rule`, `workload`: ./workload.ts), declared in YAML and applied with
 * `sigil ctl apply -f FILE`. Validation lives here, apart from applying (SPIRE's habit):
 * a whole file is validated, cross-references are checked, and only then is anything written.
 */
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import { MAX_TTL_S, MIN_TTL_S, parseDuration } from '../../util/duration.js';
import type { ResourceKind, Stores, TxStores } from '../store/types.js';
// Join rules are validated with the rule schemas of the registered join methods.
import { validateJoinRule } from '../../join/server-methods.js';
import { yamlErrorText } from '../../util/yaml-error.js';
import { validateWorkloadSpec, workloadSpecSchema, type WorkloadSpec } from './workload.js';

/** Aliases one YAML document may expand (yaml's own default); policy needs a handful at most. */
const MAX_YAML_ALIASES = 100;

export const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const nameSchema = z.string().regex(NAME_RE, 'names are 1-63 lowercase letters, digits and dashes');
const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v, 'policy_invalid');
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});
const strList = z.array(z.string().min(1).max(253)).max(256);
/**
 * Role list values: literal, or exactly one trait template `{{internal.<trait>}}` expanded from
 * the bot's traits when a credential is requested (policy/credentials.ts). A value that only
 * partly looks like a template is a typo that must not silently grant a literal "{{…".
 */
const roleList = z
  .array(
    z
      .string()
      .min(1)
      .max(253)
      .refine(
        (v) => !v.includes('{{') || /^\{\{\s*internal\.[a-z_][a-z0-9_]{0,62}\s*\}\}$/.test(v),
        'a template must be the whole value, e.g. "{{internal.logins}}"',
      ),
  )
  .max(256);
/** SSH user certificate extensions OpenSSH honours (ssh/certificate.ts USER_EXTENSIONS). */
const sshExtension = z.enum([
  'no-touch-required',
  'permit-X11-forwarding',
  'permit-agent-forwarding',
  'permit-port-forwarding',
  'permit-pty',
  'permit-user-rc',
]);

/** A role grants credential kinds and bounds them. Unknown keys are refused (typos must not widen or silently drop policy). */
export const roleSpecSchema = z.strictObject({
  max_ttl: duration.refine((s) => s >= MIN_TTL_S, `max_ttl must be at least ${MIN_TTL_S}s`).optional(),
  allowed_outputs: z.array(z.enum(['identity', 'ssh_host', 'ssh_user', 'database', 'kubernetes', 'jwt'])).optional(),
  /** Logins (SSH user certificate principals); literal or `{{internal.logins}}`. */
  ssh_logins: roleList.optional(),
  ssh_host_principals: roleList.optional(),
  /** Extensions of SSH user certificates (default: permit-pty only). */
  ssh_extensions: z.array(sshExtension).max(8).optional(),
  db_users: roleList.optional(),
  kubernetes_users: roleList.optional(),
  kubernetes_groups: roleList.optional(),
  jwt_audiences: roleList.optional(),
});
export type RoleSpec = z.infer<typeof roleSpecSchema>;

export const botSpecSchema = z.strictObject({
  roles: z.array(nameSchema).min(1, 'a bot needs at least one role'),
  traits: z.record(z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/), strList).optional(),
});

/** Method blocks are validated by each join method when it is registered (later issues). */
export const joinRuleSpecSchema = z
  .object({
    method: z.string().regex(/^[a-z0-9_]{1,32}$/),
    bot: nameSchema,
  })
  .catchall(z.unknown());

const documentSchema = z.strictObject({
  kind: z.enum(['role', 'bot', 'join_rule', 'workload']),
  name: nameSchema,
  spec: z.record(z.string(), z.unknown()),
});

export interface ResourceDoc {
  kind: ResourceKind;
  name: string;
  spec: Record<string, unknown>;
}

const SPEC_SCHEMA: Record<ResourceKind, z.ZodType> = {
  role: roleSpecSchema,
  bot: botSpecSchema,
  join_rule: joinRuleSpecSchema,
  workload: workloadSpecSchema,
};

/**
 * Parse a multi-document YAML text into validated resources (nothing is stored). `trustDomain`:
 * the issuer's, when the caller knows it — a workload's SPIFFE ID must lie in it (./workload.ts).
 */
export function parseResources(text: string, source = 'input', trustDomain?: string): ResourceDoc[] {
  const docs = parseAllDocuments(text);
  const out: ResourceDoc[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const where = `${source} document ${i + 1}`;
    if (doc.errors.length)
      throw new SigilError('policy_invalid', `${where}: YAML error: ${yamlErrorText(doc.errors[0])}`);
    // An alias bomb ("billion laughs": each anchor refers to the previous one ten times) expands
    // exponentially in toJS(); yaml refuses past maxAliasCount with a ReferenceError, which is the
    // author's mistake (policy_invalid), not ours (internal).
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
    } catch (e) {
      throw new SigilError('policy_invalid', `${where}: YAML error: ${yamlErrorText(e)}`);
    }
    if (value === null || value === undefined) return; // empty document (e.g. trailing ---)
    const d = parseWith(documentSchema, value, 'policy_invalid', where);
    // Keep the author's spec as written (durations stay "24h"), but validate it now.
    parseWith(SPEC_SCHEMA[d.kind], d.spec, 'policy_invalid', `${where} (${d.kind} ${d.name}) spec`);
    if (d.kind === 'join_rule') validateJoinRule(d.name, d.spec);
    if (d.kind === 'workload') validateWorkloadSpec(d.name, d.spec, trustDomain);
    out.push({ kind: d.kind, name: d.name, spec: d.spec });
  });
  if (out.length === 0) throw new SigilError('policy_invalid', `${source}: no resources found`);
  const seen = new Set<string>();
  for (const d of out) {
    const k = `${d.kind}/${d.name}`;
    if (seen.has(k)) throw new SigilError('policy_invalid', `${source}: ${k} is declared twice`);
    seen.add(k);
  }
  return out;
}

export interface ApplyOutcome {
  kind: ResourceKind;
  name: string;
  result: 'created' | 'updated' | 'unchanged';
}

/**
 * Apply validated resources in one transaction. References (bot → roles, join_rule → bot)
 * must resolve against this batch or the store; otherwise nothing is written.
 */
export function applyResources(stores: Stores, docs: ResourceDoc[], now: number): Promise<ApplyOutcome[]> {
  return stores.withWriteTx(async (tx) => {
    const has = async (kind: ResourceKind, name: string): Promise<boolean> =>
      docs.some((d) => d.kind === kind && d.name === name) || (await tx.resources.get(kind, name)) !== undefined;
    for (const d of docs) {
      if (d.kind === 'bot') {
        for (const r of (d.spec as { roles: string[] }).roles) {
          if (!(await has('role', r)))
            throw new SigilError('policy_invalid', `bot ${d.name}: role "${r}" does not exist`);
        }
      } else if (d.kind === 'join_rule') {
        const bot = (d.spec as { bot: string }).bot;
        if (!(await has('bot', bot)))
          throw new SigilError('policy_invalid', `join_rule ${d.name}: bot "${bot}" does not exist`);
      } else if (d.kind === 'workload') {
        const nodes = (d.spec as WorkloadSpec).nodes;
        for (const b of nodes.bots ?? [])
          if (!(await has('bot', b)))
            throw new SigilError('policy_invalid', `workload ${d.name}: bot "${b}" does not exist`);
        for (const r of nodes.join_rules ?? [])
          if (!(await has('join_rule', r)))
            throw new SigilError('policy_invalid', `workload ${d.name}: join_rule "${r}" does not exist`);
      }
    }
    // Roles first so a reader never sees a bot whose role is missing.
    const order: ResourceKind[] = ['role', 'bot', 'join_rule', 'workload'];
    const sorted = [...docs].sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind));
    const outcomes: ApplyOutcome[] = [];
    for (const d of sorted)
      outcomes.push({ kind: d.kind, name: d.name, result: await tx.resources.put(d.kind, d.name, d.spec, now) });
    for (const o of outcomes) {
      if (o.result !== 'unchanged')
        await tx.audit.append(
          { action: 'apply', outcome: 'ok', actor: 'admin', details: { kind: o.kind, name: o.name, result: o.result } },
          now,
        );
    }
    return outcomes;
  });
}

export interface BotPolicy {
  name: string;
  roles: string[];
  traits: Record<string, string[]>;
  /** The longest TTL any of the bot's roles allows, never above 24 h. */
  maxTtlS: number;
}

/** Resolve a bot and its roles from the store, or throw `unknown_bot`. */
export async function resolveBot(stores: TxStores, bot: string): Promise<BotPolicy> {
  const rec = await stores.resources.get('bot', bot);
  if (!rec) throw new SigilError('unknown_bot', `bot "${bot}" does not exist`);
  const spec = botSpecSchema.parse(rec.spec);
  let maxTtlS = 0;
  const roles = await Promise.all(spec.roles.map((r) => stores.resources.get('role', r)));
  for (const role of roles) {
    if (!role) continue;
    const rs = roleSpecSchema.parse(role.spec);
    maxTtlS = Math.max(maxTtlS, rs.max_ttl ?? MAX_TTL_S);
  }
  if (maxTtlS === 0) throw new SigilError('unknown_bot', `bot "${bot}" has no existing role`);
  return { name: bot, roles: spec.roles, traits: spec.traits ?? {}, maxTtlS: Math.min(maxTtlS, MAX_TTL_S) };
}
