/**
 * uid → user name and gid → group name for the `unix:user` / `unix:group` selectors, from
 * /etc/passwd and /etc/group (passwd(5), group(5)). Only local accounts: an NSS source such as
 * LDAP or systemd's DynamicUser= is not consulted, so such a caller gets the numeric selectors
 * only (docs/workload-api.md). Read on every attestation: an account added since is seen.
 */
import { readFileSync } from 'node:fs';

export interface AccountFiles {
  passwd: string;
  group: string;
}

export const SYSTEM_ACCOUNT_FILES: AccountFiles = { passwd: '/etc/passwd', group: '/etc/group' };

function nameOf(file: string, id: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    // name:password:id:… — the first entry for an id wins, as getpwuid(3) answers.
    if (f.length >= 3 && f[2] === String(id) && f[0]) return f[0];
  }
  return undefined;
}

export function userName(uid: number, files: AccountFiles = SYSTEM_ACCOUNT_FILES): string | undefined {
  return nameOf(files.passwd, uid);
}

export function groupName(gid: number, files: AccountFiles = SYSTEM_ACCOUNT_FILES): string | undefined {
  return nameOf(files.group, gid);
}
