/**
 * The `identity` output: the SPIFFE-helper/tbot-style file trio a workload reads.
 *
 *   svid.pem    leaf + intermediates   0644  (public)
 *   svid.key    PKCS#8 private key     0600  (only for exportable keys)
 *   bundle.pem  trust bundle           0644  (public)
 *
 * Written as one set (util/atomic-file.ts) in the order bundle → key → cert: workloads
 * typically watch svid.pem and reload, and when it changes the matching key and a bundle that
 * already trusts a rotated CA are in place.
 */
import path from 'node:path';
import type { AtomicFile, FileOwner } from '../../util/atomic-file.js';
import { writeFilesAtomic } from '../../util/atomic-file.js';
import { ensureOutputDir } from './output-dir.js';
import type { IdentityMaterial, OutputDestination } from './types.js';

export const SVID_CERT_FILE = 'svid.pem';
export const SVID_KEY_FILE = 'svid.key';
/** A TPM-resident key: TSS2 PRIVATE KEY for OpenSSL's tpm2 provider (the key never leaves the TPM). */
export const SVID_TSS2_KEY_FILE = 'svid.tss2.pem';
export const BUNDLE_FILE = 'bundle.pem';

const DIR_MODE = 0o755;
const PUBLIC_MODE = 0o644;
const KEY_MODE = 0o600;

/**
 * Write the identity files into `dir`, creating it (0755) if missing. Refuses (unsafe_path) a
 * `dir` that is a symlink or world-writable (./output-dir.ts) and any target file that is a
 * symlink or directory.
 *
 * When `keyPem` is absent an existing svid.key is left as is; the caller that switches a
 * destination from a software to a hardware key is responsible for removing it.
 */
export function writeIdentityOutput(dir: string, material: IdentityMaterial, opts: FileOwner = {}): void {
  if (typeof material.certPem !== 'string' || material.certPem.trim() === '')
    throw new TypeError('identity output: certPem is empty');
  if (typeof material.bundlePem !== 'string' || material.bundlePem.trim() === '')
    throw new TypeError('identity output: bundlePem is empty');
  if (material.keyPem !== undefined && (typeof material.keyPem !== 'string' || material.keyPem.trim() === '')) {
    throw new TypeError('identity output: keyPem is empty');
  }
  ensureOutputDir(dir, DIR_MODE);
  const files: AtomicFile[] = [{ name: BUNDLE_FILE, data: withNewline(material.bundlePem), mode: PUBLIC_MODE }];
  if (material.keyPem !== undefined)
    files.push({ name: material.keyFile ?? SVID_KEY_FILE, data: withNewline(material.keyPem), mode: KEY_MODE });
  files.push({ name: SVID_CERT_FILE, data: withNewline(material.certPem), mode: PUBLIC_MODE });
  writeFilesAtomic(dir, files, opts);
}

/** An {@link OutputDestination} for the agent config's `type: identity` entries. */
export function identityOutput(dir: string, opts: FileOwner = {}): OutputDestination {
  const resolved = path.resolve(dir);
  return {
    type: 'identity',
    path: resolved,
    write: (material) => writeIdentityOutput(resolved, material, opts),
  };
}

// PEM tools (and `cat a.pem b.pem`) expect a trailing newline.
function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}
