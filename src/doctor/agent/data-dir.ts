/**
 * The agent's data directory: `agent.db` holds software private keys and the identity, so the
 * directory is 0700 and the database 0600, both owned by the user the agent runs as. Group or
 * world *write* is a failure (anyone could swap the database for one with their identity or
 * pin); group or world *read* of the directory alone is a warning (names, not contents).
 *
 * The agent refuses (`unsafe_path`, src/agent/state/dir-perms.ts) what fails here: a directory
 * not owned by its user or root, or writable by group or others; a parent that is world-writable
 * without the sticky bit; an agent.db, -wal or -shm not owned by its user, or writable by group
 * or others. Doctor run as root on another user's agent only warns about the owner (it cannot
 * know which user the agent runs as); an agent run as root would refuse it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { AGENT_DB_FILE } from '../../agent/state/db.js';
import { stateDirParentProblem } from '../../agent/state/dir-perms.js';
import { euid, lstatOrUndefined, octal, sh } from '../file-modes.js';
import { fail, ok, warn, type Check, type CheckOutcome } from '../types.js';
import type { AgentDoctorContext } from './context.js';

/** An owner other than us: a failure, except for root looking at another user's agent. */
function ownerFinding(p: string, st: fs.Stats): CheckOutcome | undefined {
  if (st.uid === euid()) return undefined;
  const detail = `${p} is owned by uid ${st.uid}, not by uid ${euid()} running doctor`;
  if (euid() === 0)
    return warn(
      `${detail}; an agent run as root refuses it (unsafe_path), one run as uid ${st.uid} uses it: run doctor as the agent's user to check what it can do`,
      `sudo -u '#${st.uid}' sigil doctor …`,
    );
  return fail(
    `${detail}; the agent must run as the owner of its data`,
    `chown -R ${euid()} ${sh(p)} (or run the agent and doctor as uid ${st.uid})`,
  );
}

export function checkAgentDataDir(dir: string): CheckOutcome {
  const abs = path.resolve(dir);
  const st = lstatOrUndefined(abs);
  if (!st)
    return warn(
      `${abs} does not exist yet (the agent creates it 0700 at its first run)`,
      `sigil agent run --once --config <agent.yaml>`,
    );
  if (st.isSymbolicLink())
    return fail(
      `${abs} is a symbolic link; the agent refuses to use its data through one`,
      `point data_dir at the real directory (${fs.realpathSync(abs)})`,
    );
  if (!st.isDirectory()) return fail(`${abs} is not a directory`, `set data_dir to a directory, or remove ${sh(abs)}`);
  const parent = path.dirname(fs.realpathSync(abs));
  const pst = parent === abs ? undefined : fs.statSync(parent);
  if (pst && stateDirParentProblem(parent, abs, pst))
    return fail(
      `${parent}, the parent of ${abs}, is world-writable without the sticky bit (mode ${octal(pst.mode)}): anyone can rename the data directory away and put their own in its place; the agent refuses it`,
      `chmod o-w ${sh(parent)} (or move data_dir)`,
    );
  const own = ownerFinding(abs, st);
  if (own?.status === 'fail') return own;
  if ((st.mode & 0o022) !== 0)
    return fail(
      `${abs} is writable by group or others (mode ${octal(st.mode)}): another user could replace agent.db and its keys`,
      `chmod 700 ${sh(abs)}`,
    );
  const findings: CheckOutcome[] = own ? [own] : [];
  if ((st.mode & 0o077) !== 0)
    findings.push(warn(`${abs} is mode ${octal(st.mode)}, expected 0700`, `chmod 700 ${sh(abs)}`));
  let files = 0;
  for (const name of [AGENT_DB_FILE, `${AGENT_DB_FILE}-wal`, `${AGENT_DB_FILE}-shm`]) {
    const f = path.join(abs, name);
    const fst = lstatOrUndefined(f);
    if (!fst) continue;
    files++;
    if (!fst.isFile())
      return fail(
        `${f} is not a regular file (a symbolic link?); the agent refuses it`,
        `remove ${sh(f)} and let the agent recreate its state (it joins again)`,
      );
    const fo = ownerFinding(f, fst);
    if (fo?.status === 'fail') return fo;
    if ((fst.mode & 0o022) !== 0)
      return fail(
        `${f} is mode ${octal(fst.mode)}: group or others can write it, so its identity and key references may have been rewritten; the agent refuses it`,
        `if you did not expect this, remove ${sh(path.join(abs, AGENT_DB_FILE))}* (the agent joins again); otherwise chmod 600 ${sh(path.join(abs, AGENT_DB_FILE))}*`,
      );
    if ((fst.mode & 0o077) !== 0)
      return fail(
        `${f} is mode ${octal(fst.mode)}: it holds private keys and must be 0600`,
        `chmod 600 ${sh(path.join(abs, AGENT_DB_FILE))}*`,
      );
  }
  const worst = findings[0];
  if (worst) return worst;
  return ok(
    files === 0
      ? `${abs}: mode ${octal(st.mode)}, no agent.db yet (not joined)`
      : `${abs}: mode ${octal(st.mode)}, agent.db 0600, owner uid ${st.uid}`,
  );
}

export const dataDirCheck: Check<AgentDoctorContext> = {
  name: 'data_dir',
  run: (ctx) => checkAgentDataDir(ctx.cfg.dataDir),
};
