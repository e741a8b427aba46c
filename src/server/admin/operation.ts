/**
 * One administrative operation, declared once: its argument schema and what it does. The table of
 * them is ./ops.ts; `sigil ctl` (local, against the data directory) and POST /v1/admin/<op> (remote,
 * with the admin bearer credential) both run it through ./audited.ts.
 */
import type { z } from 'zod';
import type { CheckpointWriter } from '../audit/checkpoints.js';
import type { AuditVerifyOptions } from '../audit/verify.js';
import type { Stores } from '../store/types.js';

/**
 * What the audit operations need besides the stores: the checkpoint verifiers and file
 * (`audit.verify`) and the checkpoint writer (`audit.prune`). The issuer and local `sigil ctl`
 * build it from the data directory (server/audit/signer.ts).
 */
export interface AdminAuditEnv {
  verify?: Omit<AuditVerifyOptions, 'onRow'>;
  checkpoints?: CheckpointWriter;
}

/** One call of an operation, its arguments already validated by the operation's schema. */
export interface AdminCall<A> {
  stores: Stores;
  args: A;
  now: number;
  env: AdminAuditEnv;
}

export interface AdminOperation<S extends z.ZodType = z.ZodType> {
  schema: S;
  /** Its result (the store is async: operations that touch it return a promise). */
  run(call: AdminCall<z.infer<S>>): unknown;
}

/** Declare an operation; the argument type of `run` is inferred from the schema (no casts). */
export function adminOperation<S extends z.ZodType>(
  schema: S,
  run: (call: AdminCall<z.infer<S>>) => unknown,
): AdminOperation<S> {
  return { schema, run };
}
