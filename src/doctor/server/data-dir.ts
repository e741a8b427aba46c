/**
 * The issuer data directory, judged by the rule `server start` and `sigil ctl` enforce
 * (server/data-dir-perms.ts assertDataDirSecure): the directory, `ca/` and every file in them
 * owned by root or us and not writable by group or others, keys not symlinks, a parent that
 * does not let others rename the directory away. Plus: it is initialised (issuer.json).
 */
import { toSigilError } from '../../errors.js';
import { sh } from '../file-modes.js';
import { fail, ok, type Check } from '../types.js';
import { splitFix, type IssuerDoctorContext } from './context.js';

export const issuerDataDirCheck: Check<IssuerDoctorContext> = {
  name: 'data_dir',
  async run(ctx) {
    const [{ assertDataDirSecure }, { readMeta }] = await Promise.all([
      import('../../server/data-dir-perms.js'),
      import('../../server/data-dir.js'),
    ]);
    let meta;
    try {
      meta = readMeta(ctx.dataDir);
      assertDataDirSecure(ctx.dataDir);
    } catch (e) {
      const err = toSigilError(e);
      const { detail, fix } = splitFix(err.message);
      if (err.code === 'not_initialized')
        return fail(
          `not_initialized: ${ctx.dataDir} holds no issuer (no issuer.json)`,
          `sigil server init --data-dir ${sh(ctx.dataDir)} --trust-domain <your domain> (a new issuer), or copy the directory sigil server add-issuer made on the first issuer (one more issuer of a PostgreSQL store), or point --data-dir at the issuer's directory`,
        );
      return fail(
        `${err.code}: ${detail}`,
        fix ??
          `ls -la ${sh(ctx.dataDir)} ${sh(ctx.dataDir)}/ca; check nothing was planted, then restore owner and modes (docs/runbook.md "Hardening")`,
      );
    }
    return ok(
      `${ctx.dataDir}: issuer for ${meta.trust_domain} (layout ${meta.layout_version}); directory, ca/ and files owned by root or us, none writable by others`,
    );
  },
};
