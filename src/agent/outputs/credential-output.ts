/**
 * A credential output: one directory the agent keeps filled with a credential other than the
 * identity (SSH, database, Kubernetes, JWT). Each kind has two steps, so that nothing is written
 * before the issuer said yes:
 *
 *   prepare()  make what the request needs — a fresh key pair (or reuse the host key) — in memory
 *   write()    after the issuer granted it: check the answer fits what was asked (the key it
 *              certifies is ours), then write every file in one set (util/atomic-file.ts): keys
 *              0600, public material 0644, optional owner/group, symlinks refused, key before
 *              certificate so a reader that reloads on the certificate finds the matching key.
 */
import type { CredentialAskFields } from '../credential-request.js';
import type { CredentialResult } from '../../protocol/credential-messages.js';
import type { AtomicFile, FileOwner } from '../../util/atomic-file.js';
import { writeFilesAtomic } from '../../util/atomic-file.js';
import { ensureOutputDir } from './output-dir.js';
import type { CredentialOutputConfig } from './config.js';

export const KEY_MODE = 0o600;
export const PUBLIC_MODE = 0o644;
const DIR_MODE = 0o755;

export interface Prepared {
  fields: CredentialAskFields;
  /** Kind-specific material kept between prepare and write (the new private key, …). */
  secret?: Record<string, string>;
}

export interface WriteContext {
  /** The Sigil trust bundle (PEM roots) the agent holds. */
  bundlePem: string;
}

export interface CredentialDestination {
  readonly config: CredentialOutputConfig;
  /** File names (in config.path) whose absence means the output must be written again. */
  readonly files: readonly string[];
  prepare(): Promise<Prepared>;
  write(result: CredentialResult, prepared: Prepared, ctx: WriteContext): void;
}

export function ownerOf(cfg: CredentialOutputConfig): FileOwner {
  return { ...(cfg.uid !== undefined ? { uid: cfg.uid } : {}), ...(cfg.gid !== undefined ? { gid: cfg.gid } : {}) };
}

/** Create the directory if needed (0755; refused if it is a symlink or world-writable) and write the set. */
export function writeOutputFiles(cfg: CredentialOutputConfig, files: AtomicFile[]): void {
  ensureOutputDir(cfg.path, DIR_MODE);
  writeFilesAtomic(cfg.path, files, ownerOf(cfg));
}

export const withNewline = (s: string): string => (s.endsWith('\n') ? s : `${s}\n`);
