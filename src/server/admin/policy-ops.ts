/** Policy operations: apply resources, list them, list bots, create a join token. */
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { tokenId, tokenKey } from '../../join/token/wire.js';
import { MAX_TTL_S, parseDuration } from '../../util/duration.js';
import { randomSecret } from '../../util/secret.js';
import { applyResources, botSpecSchema, parseResources } from '../policy/resources.js';
import { adminOperation } from './operation.js';

export const DEFAULT_TOKEN_TTL_S = 15 * 60;

/** The largest policy text `apply` takes (characters), locally and over the admin API alike. */
export const MAX_APPLY_YAML_CHARS = 1024 * 1024;

export const POLICY_OPERATIONS = {
  apply: adminOperation(
    z.strictObject({
      yaml: z.string().max(MAX_APPLY_YAML_CHARS),
      source: z.string().max(256).optional(),
      /**
       * The issuer's trust domain, which `sigil ctl` reads from the data directory or the issuer's
       * signed bundle: a workload's SPIFFE ID must lie in it (policy/workload.ts). The issuer
       * re-checks every entry against its own trust domain whenever it uses one.
       */
      trust_domain: z.string().max(255).optional(),
    }),
    async ({ stores, args, now }) => {
      const docs = parseResources(args.yaml, args.source ?? 'input', args.trust_domain);
      return { applied: await applyResources(stores, docs, now) };
    },
  ),

  'resources.ls': adminOperation(
    z.strictObject({ kind: z.enum(['role', 'bot', 'join_rule', 'workload']).optional() }),
    async ({ stores, args }) =>
      (
        await Promise.all(
          (args.kind ? [args.kind] : (['role', 'bot', 'join_rule', 'workload'] as const)).map((k) =>
            stores.resources.list(k),
          ),
        )
      ).flat(),
  ),

  'bots.ls': adminOperation(z.strictObject({}), async ({ stores }) => {
    const [instances, bots, locked] = await Promise.all([
      stores.instances.list(),
      stores.resources.list('bot'),
      stores.botLocks.listLocked(),
    ]);
    const lockedBots = new Set(locked.map((l) => l.bot));
    return bots.map((b) => {
      const spec = botSpecSchema.parse(b.spec);
      return {
        name: b.name,
        roles: spec.roles,
        traits: spec.traits ?? {},
        locked: lockedBots.has(b.name),
        instances: instances.filter((i) => i.bot === b.name).length,
      };
    });
  }),

  'token.create': adminOperation(
    z.strictObject({ bot: z.string().min(1).max(63), ttl: z.union([z.string(), z.number()]).optional() }),
    async ({ stores, args, now }) => {
      const bot = args.bot;
      if (!(await stores.resources.get('bot', bot)))
        throw new SigilError('unknown_bot', `bot "${bot}" does not exist (create it with sigil ctl apply -f)`);
      const ttlS = Math.min(args.ttl === undefined ? DEFAULT_TOKEN_TTL_S : parseDuration(args.ttl), MAX_TTL_S);
      const token = randomSecret(32);
      // Only the id of the token's derived public key is stored (join/token/wire.ts).
      const id = tokenId(tokenKey(token).publicRaw);
      const expiresAt = now + ttlS * 1000;
      await stores.withWriteTx(async (tx) => {
        await tx.tokens.create({ hash: id, bot, createdAt: now, expiresAt });
        await tx.audit.append(
          {
            action: 'token_create',
            outcome: 'ok',
            bot,
            actor: 'admin',
            details: { ttl_s: ttlS, token_id_prefix: id.slice(0, 12) },
          },
          now,
        );
      });
      return { token, bot, expires: new Date(expiresAt).toISOString(), ttl_s: ttlS };
    },
  ),
};
