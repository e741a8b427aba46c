/** Audit operations: read the log, verify its chain, prune it behind a signed checkpoint. */
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { pruneAudit } from '../audit/prune.js';
import { verifyAuditLog } from '../audit/verify.js';
import { adminOperation } from './operation.js';

export const AUDIT_OPERATIONS = {
  audit: adminOperation(
    z.strictObject({
      since: z.number().int().nonnegative().optional(),
      limit: z.number().int().positive().max(100000).optional(),
    }),
    async ({ stores, args }) => {
      // --limit N means the newest N rows (what an operator looking at recent events wants).
      const rows = await stores.audit.list({ since: args.since });
      return args.limit !== undefined ? rows.slice(-args.limit) : rows;
    },
  ),

  // Chunked with yields: on the issuer this never holds the event loop for the whole log.
  'audit.verify': adminOperation(z.strictObject({}), ({ stores, env }) => verifyAuditLog(stores.audit, env.verify)),

  'audit.prune': adminOperation(
    z.strictObject({ before: z.number().int().nonnegative() }),
    ({ stores, args, now, env }) => {
      if (!env.checkpoints)
        throw new SigilError(
          'config_invalid',
          'audit prune needs the checkpoint signer: run it with --data-dir on the issuer machine, or against an issuer started from its data directory',
        );
      return pruneAudit(stores.audit, env.checkpoints, args.before, now, env.verify ?? {});
    },
  ),
};
