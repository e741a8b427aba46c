/** Field types shared by the join rule schemas of the cloud and CI methods. */
import { z } from 'zod';
import { parseDuration } from '../util/duration.js';

/** `15m`, `1h`, or seconds → seconds. */
export const durationField = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v, 'policy_invalid');
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

/** Files a rule names are read by the issuer when a machine joins, so they must be absolute. */
export const absolutePathField = z
  .string()
  .min(2)
  .max(4096)
  .regex(/^\//, 'file paths must be absolute (the issuer reads them when a machine joins)');

/** An https URL (key sets, discovery documents). */
export const httpsUrlField = z
  .string()
  .max(2048)
  .refine((u) => {
    try {
      return new URL(u).protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an https:// URL');
