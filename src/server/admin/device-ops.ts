/** Factory devices and first-join key bindings: import and list devices, list and reset bindings. */
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { importDevices } from './devices.js';
import { adminOperation } from './operation.js';

const METHOD_NAME = z.string().regex(/^[a-z0-9_]{1,32}$/);

export const DEVICE_OPERATIONS = {
  'devices.import': adminOperation(
    z.strictObject({
      jsonl: z.string().max(64 * 1024 * 1024),
      rule: z.string().min(1).max(63).optional(),
      source: z.string().max(256).optional(),
    }),
    ({ stores, args, now }) =>
      importDevices(stores, args.jsonl, {
        now,
        ...(args.rule !== undefined ? { rule: args.rule } : {}),
        ...(args.source !== undefined ? { source: args.source } : {}),
      }),
  ),

  'devices.ls': adminOperation(
    z.strictObject({ rule: z.string().min(1).max(63).optional() }),
    async ({ stores, args }) =>
      (await stores.devices.list(args.rule !== undefined ? { rule: args.rule } : undefined)).map((d) => ({
        serial: d.serial,
        rule: d.rule,
        idevid_fingerprint: d.idevidFingerprint,
        ek_public_hash: d.ekPublicHash,
        imported_at: new Date(d.importedAt).toISOString(),
      })),
  ),

  // First-join key bindings (join/aws-iid: instance id -> the agent's binding key).
  'bindings.ls': adminOperation(z.strictObject({ method: METHOD_NAME.optional() }), async ({ stores, args }) =>
    (await stores.keyBindings.list(args.method !== undefined ? { method: args.method } : undefined)).map((b) => ({
      method: b.method,
      subject: b.subject,
      key_hash: b.keyHash,
      rule: b.rule,
      bound_at: new Date(b.createdAt).toISOString(),
      facts: b.facts,
    })),
  ),

  'bindings.reset': adminOperation(
    z.strictObject({
      method: METHOD_NAME,
      subject: z.string().min(1).max(256),
      reason: z.string().max(500).optional(),
    }),
    ({ stores, args, now }) =>
      stores.withWriteTx(async (tx) => {
        const had = await tx.keyBindings.get(args.method, args.subject);
        if (!(await tx.keyBindings.reset(args.method, args.subject)))
          throw new SigilError(
            'not_found',
            `no ${args.method} binding for "${args.subject}" (see: sigil ctl bindings ls)`,
          );
        await tx.audit.append(
          {
            action: 'binding_reset',
            outcome: 'ok',
            actor: 'admin',
            method: args.method,
            details: { subject: args.subject, key_hash: had?.keyHash ?? null, reason: args.reason ?? null },
          },
          now,
        );
        return { method: args.method, subject: args.subject, reset: true };
      }),
  ),
};
