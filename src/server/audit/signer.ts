/**
 * Which key signs audit checkpoints and which keys verify them: the issuing intermediate of the
 * data directory (`ca/intermediate.key`, `ca/intermediate.pem`). A verifier needs only the
 * certificate, so `audit --verify` works for a user that cannot read the key.
 */
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SigilError } from '../../errors.js';
import { keptIntermediatePems, paths } from '../data-dir.js';
import { readPrivateKeyFile } from '../key-file.js';
import { checkpointVerifiers, signerId, type CheckpointSigner } from './checkpoints.js';

export function checkpointSigner(key: KeyObject): CheckpointSigner {
  return { key, id: signerId(key) };
}

export function loadCheckpointSigner(dataDir: string): CheckpointSigner {
  return checkpointSigner(readPrivateKeyFile(paths(dataDir).intKey));
}

export function loadCheckpointVerifiers(dataDir: string): Map<string, KeyObject> {
  const p = paths(dataDir).intCert;
  try {
    // And the intermediates this directory signed with before (`rotate-intermediate` keeps their
    // certificates): the checkpoints they signed are still this issuer's history.
    return checkpointVerifiers([readFileSync(p, 'utf8'), ...keptIntermediatePems(dataDir)]);
  } catch (e) {
    throw new SigilError(
      'config_invalid',
      `cannot read ${p} to verify audit checkpoints: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}
