/**
 * Credentials for the fleet view (issue #18). The administrator signs in with the existing admin
 * credential (DATA_DIR/admin.token, its SHA-256 in the store); read-only viewers get their own,
 * issued by `sigil server ui-token --name <who>` and kept as SHA-256 hashes in
 * DATA_DIR/ui-viewers.json (0600, written atomically). The token is 256 random bits, so a plain
 * SHA-256 is as strong as a slow hash here, and the file holds nothing a reader could sign in with.
 *
 * Revoking is `sigil server ui-token --revoke <who>`; the file is read at every sign-in, so both
 * take effect without a restart. A session remembers which credential signed it in (a
 * fingerprint, ./session.ts), and every page checks that the credential is still on file: revoking
 * or replacing a viewer's token, or rotating the admin credential, ends the sessions it opened at
 * their next request, on every issuer that reads the changed file or store.
 */
import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { constantTimeEqual, randomSecret, sha256Hex } from '../../util/secret.js';
import type { UiRole } from './session.js';

export const VIEWERS_FILE = 'ui-viewers.json';
/** The user name of the admin credential's sessions (audit actor `ui:admin`); no viewer may take it. */
export const ADMIN_USER = 'admin';

const viewerSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  created_at: z.string(),
});
const fileSchema = z.strictObject({ viewers: z.array(viewerSchema) });
export type ViewerEntry = z.infer<typeof viewerSchema>;

export function viewersPath(dataDir: string): string {
  return join(dataDir, VIEWERS_FILE);
}

/** The viewers on file; none when there is no file. A malformed or non-regular file is an error (never "no viewers" silently). */
export function readViewers(dataDir: string): ViewerEntry[] {
  const file = viewersPath(dataDir);
  let st;
  try {
    st = lstatSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  if (!st.isFile()) throw new SigilError('unsafe_path', `${file} is not a regular file`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new SigilError('config_invalid', `${file} is not valid JSON`);
  }
  const r = fileSchema.safeParse(parsed);
  if (!r.success) throw new SigilError('config_invalid', `${file} is not a viewer credential file`);
  return r.data.viewers;
}

function writeViewers(dataDir: string, viewers: ViewerEntry[]): void {
  writeFileAtomic(viewersPath(dataDir), JSON.stringify({ viewers }, null, 2) + '\n', { mode: 0o600 });
}

/** Issue (or replace) the viewer credential of `name`; returns the token, shown once. */
export function issueViewerToken(dataDir: string, name: string, now: number): string {
  if (!viewerSchema.shape.name.safeParse(name).success)
    throw new SigilError(
      'config_invalid',
      `viewer name "${name}" must be 1-63 of a-z 0-9 . _ - (starting alphanumeric)`,
    );
  if (name === ADMIN_USER)
    throw new SigilError(
      'config_invalid',
      `viewer name "${ADMIN_USER}" is the administrator's: its sessions and audit rows would be taken for the admin's`,
    );
  // Never starting with "-": pasted as a command-line argument it would read as an option.
  let token = randomSecret(32);
  while (token.startsWith('-')) token = randomSecret(32);
  const rest = readViewers(dataDir).filter((v) => v.name !== name);
  writeViewers(dataDir, [...rest, { name, hash: sha256Hex(token), created_at: new Date(now).toISOString() }]);
  return token;
}

/** Remove a viewer's credential; false when there was none. */
export function revokeViewerToken(dataDir: string, name: string): boolean {
  const all = readViewers(dataDir);
  const rest = all.filter((v) => v.name !== name);
  if (rest.length === all.length) return false;
  writeViewers(dataDir, rest);
  return true;
}

/**
 * What a session remembers of the credential that signed it in: a hash of the stored hash, so the
 * sessions table says which credential without holding anything that is on file or signs in.
 */
export function credentialFingerprint(storedHash: string): string {
  return sha256Hex(`sigil fleet-view credential\n${storedHash}`).slice(0, 32);
}

/**
 * `ui-viewers.json` read again only when it changed (inode, size, mtime), for the check on every
 * page that a viewer's credential is still on file.
 */
export class ViewerFile {
  #stamp = '';
  #entries: ViewerEntry[] = [];

  constructor(private readonly dataDir: string) {}

  entries(): ViewerEntry[] {
    let stamp = 'none';
    try {
      const st = lstatSync(viewersPath(this.dataDir));
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.isFile()}`;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (stamp !== this.#stamp) {
      this.#entries = readViewers(this.dataDir);
      this.#stamp = stamp;
    }
    return this.#entries;
  }
}

/**
 * Who a presented token signs in as. Every stored hash is compared, in constant time and without
 * an early exit, so the answer's timing does not say which credential (if any) came close.
 */
export function matchCredential(
  presented: string,
  adminHash: string | undefined,
  viewers: readonly ViewerEntry[],
): { user: string; role: UiRole } | undefined {
  const h = sha256Hex(presented.trim());
  let found: { user: string; role: UiRole } | undefined;
  if (adminHash !== undefined && constantTimeEqual(h, adminHash)) found = { user: ADMIN_USER, role: 'admin' };
  // A viewer entry named like the administrator (a hand-edited file) never signs in.
  for (const v of viewers)
    if (constantTimeEqual(h, v.hash) && !found && v.name !== ADMIN_USER) found = { user: v.name, role: 'viewer' };
  return found;
}

/**
 * Whether the credential that opened session `s` is still the one on file: the admin credential's
 * hash in the store, or the viewer's entry in ui-viewers.json (same name, same token).
 */
export async function credentialOnFile(
  s: { user: string; role: UiRole; credential: string },
  adminHash: () => Promise<string | undefined>,
  viewers: ViewerFile,
): Promise<boolean> {
  if (s.role === 'admin') {
    const h = await adminHash();
    return h !== undefined && constantTimeEqual(credentialFingerprint(h), s.credential);
  }
  const v = viewers.entries().find((e) => e.name === s.user);
  return v !== undefined && constantTimeEqual(credentialFingerprint(v.hash), s.credential);
}
