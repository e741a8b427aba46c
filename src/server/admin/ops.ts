/**
 * The administrative operations behind `sigil ctl`, as one table: each entry is its argument
 * schema and its action (./operation.ts), grouped by concern in ./*-ops.ts. One dispatcher serves
 * both paths: local (ctl opens the data dir's store directly) and remote (POST /v1/admin/<op> with
 * the admin bearer credential). Every input is validated here; every change is audited.
 */
import type { z } from 'zod';
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import type { Stores } from '../store/types.js';
import { AUDIT_OPERATIONS } from './audit-ops.js';
import { DEVICE_OPERATIONS } from './device-ops.js';
import { INSTANCE_OPERATIONS } from './instance-ops.js';
import type { AdminAuditEnv, AdminOperation } from './operation.js';
import { MAX_APPLY_YAML_CHARS, POLICY_OPERATIONS } from './policy-ops.js';

export type { AdminAuditEnv } from './operation.js';
export { DEFAULT_TOKEN_TTL_S, MAX_APPLY_YAML_CHARS } from './policy-ops.js';

/**
 * Body limit of POST /v1/admin/<op>: a MAX_APPLY_YAML_CHARS policy must fit once JSON-encoded.
 * A UTF-16 unit encodes to at most 3 UTF-8 bytes (an escape like \n is 2), so 3× plus room for
 * the envelope. The route checks the admin credential before it reads the body. (Remote
 * `devices.import` stays bounded by this too: large manifests go through local mode.)
 */
export const ADMIN_MAX_BODY_BYTES = 3 * MAX_APPLY_YAML_CHARS + 64 * 1024;

const ADMIN_OPERATIONS = { ...POLICY_OPERATIONS, ...INSTANCE_OPERATIONS, ...AUDIT_OPERATIONS, ...DEVICE_OPERATIONS };

export type AdminOp = keyof typeof ADMIN_OPERATIONS;

export function isAdminOp(x: string): x is AdminOp {
  return Object.prototype.hasOwnProperty.call(ADMIN_OPERATIONS, x);
}

/** Validate and run one operation; rejects (never throws) with what the operation refused. */
export async function runAdminOp(
  stores: Stores,
  op: string,
  rawArgs: unknown,
  now: number = Date.now(),
  env: AdminAuditEnv = {},
): Promise<unknown> {
  if (!isAdminOp(op)) throw new SigilError('not_found', `unknown admin operation "${op}"`);
  const operation: AdminOperation = ADMIN_OPERATIONS[op];
  const args: unknown = parseWith(operation.schema as z.ZodType, rawArgs ?? {}, 'bad_request', `${op} arguments`);
  return operation.run({ stores, args, now, env });
}
