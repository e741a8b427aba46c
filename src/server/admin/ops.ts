/**
 * Administrative operations behind `sigil ctl`. One dispatcher serves both paths: local
 * (ctl opens the data dir's store directly) and remote (POST /v1/admin/<op> with the admin
 * bearer credential). Every input is validated here; every change is audited.
 */
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import { MAX_TTL_S, parseDuration } from '../../util/duration.js';
import { tokenId, tokenKey } from '../../join/token/wire.js';
import { randomSecret } from '../../util/secret.js';
import { applyResources, botSpecSchema, parseResources } from '../policy/resources.js';
import { importDevices } from './devices.js';
import type { Stores } from '../store/types.js';
import type { CheckpointWriter } from '../audit/checkpoints.js';
import { pruneAudit } from '../audit/prune.js';
import { verifyAuditLog, type AuditVerifyOptions } from '../audit/verify.js';

/**
 * What the audit operations need besides the stores: the checkpoint verifiers and file
 * (`audit.verify`) and the checkpoint writer (`audit.prune`). The issuer and local `sigil ctl`
 * build it from the data directory (server/audit/signer.ts).
 */
export interface AdminAuditEnv {
  verify?: Omit<AuditVerifyOptions, 'onRow'>;
  checkpoints?: CheckpointWriter;
}

export const DEFAULT_TOKEN_TTL_S = 15 * 60;

/** The largest policy text `apply` takes (characters), locally and over the admin API alike. */
export const MAX_APPLY_YAML_CHARS = 1024 * 1024;
/**
 * Body limit of POST /v1/admin/<op>: a MAX_APPLY_YAML_CHARS policy must fit once JSON-encoded.
 * A UTF-16 unit encodes to at most 3 UTF-8 bytes (an escape like \n is 2), so 3× plus room for
 * the envelope. The route checks the admin credential before it reads the body. (Remote
 * `devices.import` stays bounded by this too: large manifests go through local mode.)
 */
export const ADMIN_MAX_BODY_BYTES = 3 * MAX_APPLY_YAML_CHARS + 64 * 1024;

const schemas = {
  apply: z.strictObject({ yaml: z.string().max(MAX_APPLY_YAML_CHARS), source: z.string().max(256).optional() }),
  'token.create': z.strictObject({ bot: z.string().min(1).max(63), ttl: z.union([z.string(), z.number()]).optional() }),
  'bots.ls': z.strictObject({}),
  'instances.ls': z.strictObject({ bot: z.string().optional() }),
  'instances.tpm-clock-reset': z.strictObject({ instance: z.string().min(1).max(128), reason: z.string().max(500).optional() }),
  lock: z.strictObject({ target: z.string().min(1).max(128), reason: z.string().max(500).optional() }),
  unlock: z.strictObject({ target: z.string().min(1).max(128) }),
  audit: z.strictObject({ since: z.number().int().nonnegative().optional(), limit: z.number().int().positive().max(100000).optional() }),
  'audit.verify': z.strictObject({}),
  'audit.prune': z.strictObject({ before: z.number().int().nonnegative() }),
  'resources.ls': z.strictObject({ kind: z.enum(['role', 'bot', 'join_rule']).optional() }),
  'devices.import': z.strictObject({ jsonl: z.string().max(64 * 1024 * 1024), rule: z.string().min(1).max(63).optional(), source: z.string().max(256).optional() }),
  'devices.ls': z.strictObject({ rule: z.string().min(1).max(63).optional() }),
  'bindings.ls': z.strictObject({ method: z.string().regex(/^[a-z0-9_]{1,32}$/).optional() }),
  'bindings.reset': z.strictObject({ method: z.string().regex(/^[a-z0-9_]{1,32}$/), subject: z.string().min(1).max(256), reason: z.string().max(500).optional() }),
} as const;

export type AdminOp = keyof typeof schemas;
export const ADMIN_OPS = Object.keys(schemas) as AdminOp[];

export function isAdminOp(x: string): x is AdminOp {
  return Object.prototype.hasOwnProperty.call(schemas, x);
}

function resolveLockTarget(stores: Stores, target: string): { kind: 'bot' | 'instance'; id: string } {
  if (stores.resources.get('bot', target)) return { kind: 'bot', id: target };
  if (stores.instances.get(target)) return { kind: 'instance', id: target };
  throw new SigilError('not_found', `"${target}" is neither a bot nor an instance id (see: sigil ctl bots ls, sigil ctl instances ls)`);
}

/** Most operations answer at once; `audit.verify` and `audit.prune` return a promise (chunked walk). */
export function runAdminOp(stores: Stores, op: string, rawArgs: unknown, now: number = Date.now(), env: AdminAuditEnv = {}): unknown {
  if (!isAdminOp(op)) throw new SigilError('not_found', `unknown admin operation "${op}"`);
  const args = parseWith(schemas[op] as z.ZodType, rawArgs ?? {}, 'bad_request', `${op} arguments`) as Record<string, unknown>;
  switch (op) {
    case 'apply': {
      const docs = parseResources(args.yaml as string, (args.source as string | undefined) ?? 'input');
      return { applied: applyResources(stores, docs, now) };
    }
    case 'token.create': {
      const bot = args.bot as string;
      if (!stores.resources.get('bot', bot)) throw new SigilError('unknown_bot', `bot "${bot}" does not exist (create it with sigil ctl apply -f)`);
      const ttlS = Math.min(args.ttl === undefined ? DEFAULT_TOKEN_TTL_S : parseDuration(args.ttl as string | number), MAX_TTL_S);
      const token = randomSecret(32);
      // Only the id of the token's derived public key is stored (join/token/wire.ts).
      const id = tokenId(tokenKey(token).publicRaw);
      const expiresAt = now + ttlS * 1000;
      stores.tx(() => {
        stores.tokens.create({ hash: id, bot, createdAt: now, expiresAt });
        stores.audit.append({ action: 'token_create', outcome: 'ok', bot, actor: 'admin', details: { ttl_s: ttlS, token_id_prefix: id.slice(0, 12) } }, now);
      });
      return { token, bot, expires: new Date(expiresAt).toISOString(), ttl_s: ttlS };
    }
    case 'bots.ls': {
      const instances = stores.instances.list();
      return stores.resources.list('bot').map((b) => {
        const spec = botSpecSchema.parse(b.spec);
        return {
          name: b.name,
          roles: spec.roles,
          traits: spec.traits ?? {},
          locked: stores.botLocks.isLocked(b.name),
          instances: instances.filter((i) => i.bot === b.name).length,
        };
      });
    }
    case 'instances.ls':
      return stores.instances.list(args.bot ? { bot: args.bot as string } : undefined).map((i) => ({
        id: i.id,
        bot: i.bot,
        spiffe_id: i.spiffeId,
        join_method: i.joinMethod,
        generation: i.generation,
        serial: i.currentSerial,
        not_after: i.currentNotAfter ? new Date(i.currentNotAfter).toISOString() : null,
        key_storage: i.keyStorage,
        exportable: i.exportable,
        locked: i.locked,
        lock_reason: i.lockReason,
        last_seen: new Date(i.lastSeenAt).toISOString(),
        facts: i.facts,
      }));
    case 'instances.tpm-clock-reset': {
      // A deliberately cleared TPM (TPM2_Clear resets its Clock) keeps its EK, so it is the same
      // instance — but its clock is now behind the one recorded, which join/tpm/clock.ts refuses
      // as a rollback. Forgetting the recorded clock accepts the next join's reading as the new
      // baseline; audited with the value forgotten.
      const id = args.instance as string;
      const inst = stores.instances.get(id);
      if (!inst) throw new SigilError('not_found', `no instance "${id}" (see: sigil ctl instances ls)`);
      const was = inst.facts.tpm_clock_ms;
      if (typeof was !== 'number') throw new SigilError('bad_request', `instance "${id}" has no recorded TPM clock (it did not join with the tpm method, or its clock was already reset)`);
      const reason = (args.reason as string | undefined) ?? null;
      stores.tx(() => {
        stores.instances.updateFacts(id, { tpm_clock_ms: null, tpm_clock_reset_at: new Date(now).toISOString() }, now);
        stores.audit.append({ action: 'tpm_clock_reset', outcome: 'ok', actor: 'admin', bot: inst.bot, instanceId: id, details: { forgotten_clock_ms: was, reason } }, now);
      });
      return { instance: id, forgotten_clock_ms: was, reset: true };
    }
    case 'lock':
    case 'unlock': {
      const t = resolveLockTarget(stores, args.target as string);
      const locked = op === 'lock';
      const reason = locked ? ((args.reason as string | undefined) ?? 'locked by an administrator') : null;
      stores.tx(() => {
        if (t.kind === 'bot') stores.botLocks.setLocked(t.id, locked, reason, now);
        else stores.instances.setLocked(t.id, locked, reason, now);
        stores.audit.append({ action: op, outcome: 'ok', actor: 'admin', bot: t.kind === 'bot' ? t.id : null, instanceId: t.kind === 'instance' ? t.id : null, details: { kind: t.kind, reason } }, now);
      });
      return { [t.kind]: t.id, locked };
    }
    case 'audit': {
      // --limit N means the newest N rows (what an operator looking at recent events wants).
      const rows = stores.audit.list({ since: args.since as number | undefined });
      const limit = args.limit as number | undefined;
      return limit !== undefined ? rows.slice(-limit) : rows;
    }
    case 'audit.verify':
      // Chunked with yields: on the issuer this never holds the event loop for the whole log.
      return verifyAuditLog(stores.audit, env.verify);
    case 'audit.prune':
      if (!env.checkpoints) throw new SigilError('config_invalid', 'audit prune needs the checkpoint signer: run it with --data-dir on the issuer machine, or against an issuer started from its data directory');
      return pruneAudit(stores.audit, env.checkpoints, args.before as number, now, env.verify ?? {});
    case 'devices.import':
      return importDevices(stores, args.jsonl as string, {
        now,
        ...(args.rule !== undefined ? { rule: args.rule as string } : {}),
        ...(args.source !== undefined ? { source: args.source as string } : {}),
      });
    case 'devices.ls':
      return stores.devices.list(args.rule !== undefined ? { rule: args.rule as string } : undefined).map((d) => ({
        serial: d.serial,
        rule: d.rule,
        idevid_fingerprint: d.idevidFingerprint,
        ek_public_hash: d.ekPublicHash,
        imported_at: new Date(d.importedAt).toISOString(),
      }));
    case 'bindings.ls':
      // First-join key bindings (join/aws-iid: instance id -> the agent's binding key).
      return stores.keyBindings.list(args.method !== undefined ? { method: args.method as string } : undefined).map((b) => ({
        method: b.method,
        subject: b.subject,
        key_hash: b.keyHash,
        rule: b.rule,
        bound_at: new Date(b.createdAt).toISOString(),
        facts: b.facts,
      }));
    case 'bindings.reset': {
      const method = args.method as string;
      const subject = args.subject as string;
      return stores.tx(() => {
        const had = stores.keyBindings.get(method, subject);
        if (!stores.keyBindings.reset(method, subject)) throw new SigilError('not_found', `no ${method} binding for "${subject}" (see: sigil ctl bindings ls)`);
        stores.audit.append({ action: 'binding_reset', outcome: 'ok', actor: 'admin', method, details: { subject, key_hash: had?.keyHash ?? null, reason: (args.reason as string | undefined) ?? null } }, now);
        return { method, subject, reset: true };
      });
    }
    case 'resources.ls':
      return (args.kind ? [args.kind as 'role' | 'bot' | 'join_rule'] : (['role', 'bot', 'join_rule'] as const)).flatMap((k) => stores.resources.list(k));
  }
}
