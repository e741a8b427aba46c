/**
 * Roles decide every credential a bot may request (`credential` operation). A request is
 * decided by the bot's roles *in the order the bot lists them*: the first role that allows the
 * output kind AND everything asked for grants it, with that role's TTL bound and SSH extensions.
 * Roles are never merged — a login from one role and a TTL from another never combine into a
 * credential no single role allows. A request beyond every role is refused (`role_denied`) with
 * a message naming the role and the rule (`role edge does not allow login root (ssh_logins)`);
 * it is never silently narrowed or widened.
 *
 * List values may be literal or a trait template, `{{internal.<trait>}}`, replaced by the bot's
 * trait values (bot spec `traits:`). Both are supported for every list key; docs/credentials.md
 * explains the trade-off (one role per login set vs. one role for many bots).
 */
import { SigilError } from '../../errors.js';
import type { CredentialKind } from '../../protocol/credential-messages.js';
import { DEFAULT_TTL_S, MAX_TTL_S } from '../../util/duration.js';
import type { TxStores } from '../store/types.js';
import { botSpecSchema, roleSpecSchema, type RoleSpec } from './resources.js';
import { decideTtl, type TtlDecision } from './ttl.js';

/** `{{internal.logins}}`: the whole value is one template (partial templates are refused at apply). */
export const TRAIT_TEMPLATE = /^\{\{\s*internal\.([a-z_][a-z0-9_]{0,62})\s*\}\}$/;
/** What an expanded value must look like to be used (as protocol/credential-messages.ts names). */
const USABLE = /^[^\s,\0-\x1f\x7f]{1,253}$/;
/** SSH user certificates get only a PTY unless a role says otherwise (no agent/X11/port forwarding). */
export const DEFAULT_SSH_EXTENSIONS = ['permit-pty'] as const;
/** JWT-SVIDs are bearer tokens: short by default (SPIRE uses 5 minutes too). */
export const DEFAULT_JWT_TTL_S = 300;

export interface CredentialAsk {
  kind: CredentialKind;
  ttlS?: number | undefined;
  logins?: string[] | undefined;
  principals?: string[] | undefined;
  dbUser?: string | undefined;
  kubernetesUser?: string | undefined;
  kubernetesGroups?: string[] | undefined;
  audiences?: string[] | undefined;
}

export interface CredentialGrant {
  kind: CredentialKind;
  /** The role that decided. */
  role: string;
  ttl: TtlDecision;
  /** ssh_user: logins; ssh_host: host names/IPs. */
  principals?: string[];
  /** ssh_user: certificate extensions. */
  extensions?: string[];
  dbUser?: string;
  kubernetesUser?: string;
  kubernetesGroups?: string[];
  audiences?: string[];
}

/** Expand trait templates; values unusable as names (spaces, commas) are dropped. */
export function expandTraits(values: readonly string[] | undefined, traits: Record<string, string[]>): string[] {
  const out = new Set<string>();
  for (const v of values ?? []) {
    const m = TRAIT_TEMPLATE.exec(v);
    for (const x of m ? (traits[m[1]!] ?? []) : [v]) if (USABLE.test(x)) out.add(x);
  }
  return [...out];
}

type Decision = { grant: CredentialGrant } | { denied: string };

function chooseOne(
  role: string,
  allowed: string[],
  asked: string | undefined,
  what: string,
  rule: string,
): { value: string } | { denied: string } {
  if (asked !== undefined)
    return allowed.includes(asked)
      ? { value: asked }
      : { denied: `role ${role} does not allow ${what} ${asked} (${rule})` };
  if (allowed.length === 1) return { value: allowed[0]! };
  if (allowed.length === 0) return { denied: `role ${role} grants no ${what} (${rule})` };
  return {
    denied: `role ${role} grants several ${what}s (${allowed.join(', ')}); the request must name one (${rule})`,
  };
}

function subset(
  role: string,
  allowed: string[],
  asked: string[] | undefined,
  what: string,
  rule: string,
): { values: string[] } | { denied: string } {
  const values = asked ?? allowed;
  const extra = values.find((v) => !allowed.includes(v));
  if (extra !== undefined) return { denied: `role ${role} does not allow ${what} ${extra} (${rule})` };
  return { values: [...new Set(values)] };
}

function decideWithRole(name: string, spec: RoleSpec, traits: Record<string, string[]>, ask: CredentialAsk): Decision {
  const ttl = decideTtl(
    ask.ttlS ?? (ask.kind === 'jwt' ? DEFAULT_JWT_TTL_S : DEFAULT_TTL_S),
    Math.min(spec.max_ttl ?? MAX_TTL_S, MAX_TTL_S),
  );
  const base = { kind: ask.kind, role: name, ttl };
  switch (ask.kind) {
    case 'ssh_user': {
      const allowed = expandTraits(spec.ssh_logins, traits);
      if (allowed.length === 0)
        return {
          denied: `role ${name} grants no login (ssh_logins${spec.ssh_logins?.length ? ': its trait templates expand to nothing for this bot' : ''})`,
        };
      const r = subset(name, allowed, ask.logins, 'login', 'ssh_logins');
      return 'denied' in r
        ? r
        : {
            grant: { ...base, principals: r.values, extensions: [...(spec.ssh_extensions ?? DEFAULT_SSH_EXTENSIONS)] },
          };
    }
    case 'ssh_host': {
      const allowed = expandTraits(spec.ssh_host_principals, traits);
      if (allowed.length === 0) return { denied: `role ${name} grants no host principal (ssh_host_principals)` };
      const r = subset(name, allowed, ask.principals, 'host principal', 'ssh_host_principals');
      return 'denied' in r ? r : { grant: { ...base, principals: r.values } };
    }
    case 'database': {
      const r = chooseOne(name, expandTraits(spec.db_users, traits), ask.dbUser, 'database user', 'db_users');
      return 'denied' in r ? r : { grant: { ...base, dbUser: r.value } };
    }
    case 'kubernetes': {
      const u = chooseOne(
        name,
        expandTraits(spec.kubernetes_users, traits),
        ask.kubernetesUser,
        'kubernetes user',
        'kubernetes_users',
      );
      if ('denied' in u) return u;
      const g = subset(
        name,
        expandTraits(spec.kubernetes_groups, traits),
        ask.kubernetesGroups,
        'kubernetes group',
        'kubernetes_groups',
      );
      return 'denied' in g ? g : { grant: { ...base, kubernetesUser: u.value, kubernetesGroups: g.values } };
    }
    case 'jwt': {
      if (!ask.audiences?.length)
        throw new SigilError('bad_request', 'a jwt credential request must name its audiences');
      const allowed = expandTraits(spec.jwt_audiences, traits);
      const r = subset(name, allowed, ask.audiences, 'audience', 'jwt_audiences');
      return 'denied' in r ? r : { grant: { ...base, audiences: r.values } };
    }
  }
}

/** Decide a request for `bot`; throws `role_denied` (or `unknown_bot`) when no role grants it. */
export async function decideCredential(stores: TxStores, bot: string, ask: CredentialAsk): Promise<CredentialGrant> {
  const rec = await stores.resources.get('bot', bot);
  if (!rec) throw new SigilError('unknown_bot', `bot "${bot}" does not exist`);
  const botSpec = botSpecSchema.parse(rec.spec);
  const traits = botSpec.traits ?? {};
  const candidates: Array<{ name: string; spec: RoleSpec }> = [];
  const roles = await Promise.all(botSpec.roles.map((name) => stores.resources.get('role', name)));
  for (const [i, name] of botSpec.roles.entries()) {
    const role = roles[i];
    if (!role) continue;
    const spec = roleSpecSchema.parse(role.spec);
    if (spec.allowed_outputs?.includes(ask.kind)) candidates.push({ name, spec });
  }
  if (candidates.length === 0) {
    const who =
      botSpec.roles.length === 1
        ? `role ${botSpec.roles[0]} does not allow`
        : `no role of bot ${bot} (${botSpec.roles.join(', ')}) allows`;
    throw new SigilError('role_denied', `${who} output ${ask.kind} (allowed_outputs)`);
  }
  const denials: string[] = [];
  for (const c of candidates) {
    const d = decideWithRole(c.name, c.spec, traits, ask);
    if ('grant' in d) return d.grant;
    denials.push(d.denied);
  }
  throw new SigilError('role_denied', denials.join('; '));
}
