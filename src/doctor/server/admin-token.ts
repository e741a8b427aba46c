/**
 * The admin credential file: present, a regular file, owner-only (it is a bearer token for
 * the whole admin API), owned by root or the issuer's user.
 */
import { euid, lstatOrUndefined, octal, sh } from '../file-modes.js';
import { fail, ok, type Check, type CheckOutcome } from '../types.js';
import type { IssuerDoctorContext } from './context.js';

export const adminTokenCheck: Check<IssuerDoctorContext> = {
  name: 'admin_token',
  async run(ctx): Promise<CheckOutcome> {
    const { paths } = await import('../../server/data-dir.js');
    const file = paths(ctx.dataDir).adminToken;
    const st = lstatOrUndefined(file);
    if (!st)
      return fail(
        `${file} is missing: remote sigil ctl cannot authenticate`,
        `restore it from your backup (the issuer stores only its hash), or make a new one: sigil server rotate-key --data-dir ${sh(ctx.dataDir)} --key admin-token`,
      );
    if (!st.isFile())
      return fail(
        `${file} is not a regular file (a symbolic link?)`,
        `replace ${sh(file)} with the credential file itself, mode 0600`,
      );
    if ((st.mode & 0o077) !== 0)
      return fail(
        `${file} is mode ${octal(st.mode)}: anyone who reads it administers the issuer`,
        `chmod 600 ${sh(file)}`,
      );
    if (st.uid !== 0 && st.uid !== euid())
      return fail(
        `${file} is owned by uid ${st.uid}, not root or uid ${euid()}`,
        `check it was not replaced, then: chown ${euid()} ${sh(file)}`,
      );
    return ok(`${file}: mode ${octal(st.mode)}, owner uid ${st.uid}`);
  },
};
