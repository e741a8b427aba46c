/**
 * Where the agent writes credentials. The rules are the agent's own (agent/outputs/check-path.ts,
 * which `sigil agent run` applies before its first network call): not on a kernel pseudo file
 * system, a real directory or creatable under a writable one, not a symbolic link (a link is how
 * a root-run agent is made to write elsewhere), not world-writable (anyone could replace
 * bundle.pem). Doctor adds the fix for each refusal, that an existing directory is writable by
 * this user, and a warning for a group-writable one. It never creates or writes anything.
 */
import fs from 'node:fs';
import path from 'node:path';
import { outputDirProblem } from '../../agent/outputs/check-path.js';
import { existingAncestor, lstatOrUndefined, octal, sh, writable } from '../file-modes.js';
import { fail, ok, warn, type Check, type CheckOutcome } from '../types.js';
import type { AgentDoctorContext } from './context.js';

/** The command (or config change) that fixes a refused output directory. */
function fixFor(abs: string, st: fs.Stats | undefined): string {
  if (!st)
    return `mkdir -p ${sh(abs)} && chown <agent user> ${sh(abs)}, or set the output's path to a directory on real storage (e.g. /run/sigil/identity)`;
  if (st.isSymbolicLink())
    return `set the output's path to the real directory, or replace the link: rm ${sh(abs)} && mkdir -m 0755 ${sh(abs)}`;
  if (!st.isDirectory()) return `set the output's path to a directory, or remove ${sh(abs)}`;
  if ((st.mode & 0o002) !== 0) return `chmod o-w ${sh(abs)}`;
  return `set the output's path to a directory on real storage (e.g. /run/sigil/identity)`;
}

export function checkOutputDir(dir: string): CheckOutcome {
  const abs = path.resolve(dir);
  const why = outputDirProblem(abs, { create: false });
  const st = lstatOrUndefined(abs);
  if (why) return fail(`${abs}: ${why}`, fixFor(abs, st));
  if (!st) return ok(`${abs} does not exist yet; the agent will create it (under ${existingAncestor(abs)})`);
  if (!writable(abs))
    return fail(
      `${abs} is not writable by this user (mode ${octal(st.mode)}, owner uid ${st.uid})`,
      `chown <agent user> ${sh(abs)}`,
    );
  if ((st.mode & 0o020) !== 0)
    return warn(
      `${abs} is group-writable (mode ${octal(st.mode)}): members of gid ${st.gid} can replace the credentials`,
      `chmod g-w ${sh(abs)}`,
    );
  return ok(`${abs}: directory, mode ${octal(st.mode)}, writable`);
}

/** Every output directory of the config: `identity` and the credential outputs. */
export function outputChecks(ctx: AgentDoctorContext): Array<Check<AgentDoctorContext>> {
  const dirs = [...ctx.cfg.outputs.map((o) => o.path), ...ctx.cfg.credentialOutputs.map((o) => o.path)];
  return [...new Set(dirs)].map((dir) => ({ name: `output:${dir}`, run: () => checkOutputDir(dir) }));
}
