/**
 * The `workload` operation (protocol v1, issue #17): a joined agent asks the issuer about the
 * workload registration entries (`kind: workload` resources) that apply to its node, and for
 * their SVIDs. Signed by the agent's CURRENT identity key with its chain in x5c and naming that
 * signer, exactly like `credential` (./credential-messages.ts); the issuer decides everything
 * from its registrations — the agent never names a SPIFFE ID, only an entry.
 *
 *   action entries   → the entries that apply to this node
 *   action x509      entry, csr (PKCS#10 PEM: proof of possession)  → the entry's X.509-SVID
 *   action jwt       entry, audience[], answer_key                   → the entry's JWT-SVID
 *
 * `answer_key` (./answer-key.ts) is required for `jwt` over a carrier that is not confidential
 * (MQTT: `answer_key_required`); the token then comes back sealed as `token_jwe`.
 *
 * Selectors (docs/workload-registration.md) are `type:value` strings whose grammar lives here so
 * that the issuer (which validates registrations) and the agent (which attests callers) read
 * them alike. Values are canonical — `unix:uid:1000`, never `unix:uid:01000` — because the agent
 * compares them as strings.
 */
import { z } from 'zod';
import { answerKeySchema } from './answer-key.js';
import { lifetimeFields, PROTOCOL_VERSION } from './messages.js';
import { namedSignerFields, requestIdSchema } from './requests.js';

/** What a selector value of each type must look like (and why), checked at `ctl apply`. */
export const SELECTOR_TYPES = {
  /** A decimal uid, no leading zeros, below 2^32. */
  'unix:uid': { re: /^(0|[1-9][0-9]{0,9})$/, what: 'a decimal uid without leading zeros' },
  'unix:gid': { re: /^(0|[1-9][0-9]{0,9})$/, what: 'a decimal gid without leading zeros' },
  /** POSIX portable user and group names (useradd's default NAME_REGEX, with an optional `$`). */
  'unix:user': { re: /^[a-z_][a-z0-9_-]{0,31}\$?$/, what: 'a user name ([a-z_][a-z0-9_-]*, at most 32)' },
  'unix:group': { re: /^[a-z_][a-z0-9_-]{0,31}\$?$/, what: 'a group name ([a-z_][a-z0-9_-]*, at most 32)' },
  /** The executable as /proc/<pid>/exe resolves it: absolute, no `.`/`..`/empty segments. */
  'unix:path': {
    re: /^(\/(?!\.{1,2}(\/|$))[^/\0-\x1f\x7f]+)+$/,
    what: 'an absolute, canonical executable path (no ".", ".." or empty segments, no trailing "/")',
  },
  'unix:sha256': { re: /^[0-9a-f]{64}$/, what: '64 lower-case hex digits (SHA-256 of the executable)' },
  /** The unit from the caller's cgroup: a service or a scope. */
  'systemd:unit': {
    re: /^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|scope)$/,
    what: 'a systemd unit name ending in .service or .scope',
  },
} as const;
export type SelectorType = keyof typeof SELECTOR_TYPES;
const TYPES = Object.keys(SELECTOR_TYPES) as SelectorType[];

export const MAX_SELECTOR_CHARS = 4096 + 16;

/** `unix:uid:1000` → {type: 'unix:uid', value: '1000'}; a string saying what is wrong otherwise. */
export function parseSelector(s: string): { type: SelectorType; value: string } | string {
  if (s.length > MAX_SELECTOR_CHARS) return `a selector is at most ${MAX_SELECTOR_CHARS} characters`;
  const type = TYPES.find((t) => s.startsWith(`${t}:`));
  if (!type) return `"${s.slice(0, 64)}" is not <type>:<value> with a type of ${TYPES.join(', ')}`;
  const value = s.slice(type.length + 1);
  const rule = SELECTOR_TYPES[type];
  if (!rule.re.test(value)) return `${type}: "${value.slice(0, 128)}" is not ${rule.what}`;
  if ((type === 'unix:uid' || type === 'unix:gid') && Number(value) > 0xffffffff)
    return `${type}: ${value} is above 2^32-1`;
  return { type, value };
}

/** The entry names a request refers to: the resource names of policy/resources.ts. */
const entrySchema = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'entry must be a workload resource name');
/** Audiences: printable, no whitespace, no comma (as credential-messages.ts). */
export const audienceSchema = z
  .string()
  .regex(/^[^\s,\0-\x1f\x7f]{1,253}$/, 'must be 1-253 printable characters without spaces or commas');

const base = {
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('workload'),
  request_id: requestIdSchema,
  timestamp: z.number().int().positive(),
  ...namedSignerFields,
};

export const workloadRequestSchema = z.discriminatedUnion('action', [
  z.strictObject({ ...base, action: z.literal('entries') }),
  z.strictObject({
    ...base,
    action: z.literal('x509'),
    entry: entrySchema,
    csr: z
      .string()
      .min(1)
      .max(16 * 1024),
  }),
  z.strictObject({
    ...base,
    action: z.literal('jwt'),
    entry: entrySchema,
    audience: z.array(audienceSchema).min(1).max(16),
    answer_key: answerKeySchema.optional(),
  }),
]);
export type WorkloadRequest = z.infer<typeof workloadRequestSchema>;
export type WorkloadAction = WorkloadRequest['action'];

/** One registration entry as the agent sees it (agent/workload/issuer-port.ts WorkloadEntry). */
export interface WorkloadEntryWire {
  id: string;
  spiffe_id: string;
  selectors: string[];
  /** The X.509-SVID lifetime the issuer grants (the entry's, at most 24 h). */
  ttl_s: number;
  dns_names: string[];
  jwt_audiences: string[];
}

export interface WorkloadEntriesResult {
  action: 'entries';
  trust_domain: string;
  entries: WorkloadEntryWire[];
}

export interface WorkloadX509Result {
  action: 'x509';
  entry: string;
  spiffe_id: string;
  serial: string;
  /** PEM: the SVID, then the issuing intermediate. */
  chain: string[];
  /** PEM trust anchors. */
  bundle: string[];
  not_before: number;
  not_after: number;
  ttl_s: number;
  requested_ttl_s: number;
  ttl_clamped: boolean;
  renew_after: number;
}

export interface WorkloadJwtResult {
  action: 'jwt';
  entry: string;
  spiffe_id: string;
  /** The token's `jti`. */
  serial: string;
  audience: string[];
  /** The compact JWT-SVID; absent when it is sealed to the request's answer_key (`token_jwe`). */
  token?: string;
  token_jwe?: string;
  issued_at_s: number;
  expires_at: number;
  issuer_url: string;
}

export type WorkloadResult = WorkloadEntriesResult | WorkloadX509Result | WorkloadJwtResult;

const serialHexSchema = z.string().regex(/^[0-9a-f]{1,64}$/);

export const workloadResultSchema = z.discriminatedUnion('action', [
  z.object({
    action: z.literal('entries'),
    trust_domain: z.string().min(1),
    entries: z.array(
      z.object({
        id: z.string().min(1),
        spiffe_id: z.string().startsWith('spiffe://'),
        selectors: z.array(z.string()).min(1),
        ttl_s: z.number().int().positive(),
        dns_names: z.array(z.string()),
        jwt_audiences: z.array(z.string()),
      }),
    ),
  }),
  z.object({
    action: z.literal('x509'),
    entry: z.string(),
    spiffe_id: z.string().startsWith('spiffe://'),
    serial: serialHexSchema,
    chain: z.array(z.string()).min(1),
    bundle: z.array(z.string()).min(1),
    ...lifetimeFields(),
  }),
  z.object({
    action: z.literal('jwt'),
    entry: z.string(),
    spiffe_id: z.string().startsWith('spiffe://'),
    serial: serialHexSchema,
    audience: z.array(z.string()).min(1),
    token: z.string().optional(),
    token_jwe: z.string().optional(),
    issued_at_s: z.number(),
    expires_at: z.number(),
    issuer_url: z.string(),
  }),
]);

export const workloadResponseSchema = z.object({
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('workload'),
  request_id: z.string(),
  issued_at: z.number(),
  result: workloadResultSchema,
});
