/**
 * The root CRL as a LOCAL source of revocations (docs/issuers.md, "database writer"): the registry
 * lives in the shared database, and whoever can write it can set a revoked intermediate back to
 * active. The root CRL cannot be forged without the root key, so an issuer that finds one in its
 * data directory (`DATA_DIR/crl/root.crl`, written by `retire-issuer --revoke` where the root key
 * is, and copied to every issuer) treats every intermediate it lists as revoked, whatever the
 * database says. A file that is not a CRL signed by the pinned root is ignored (and logged).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseRootCrl, type RootCrl } from '../../pki/root-crl.js';

export const rootCrlFile = (dataDir: string): string => join(dataDir, 'crl', 'root.crl');

/** The serials (lowercase hex, no leading zeros) the root CRL at `file` lists; undefined when there is none. */
export async function readRootCrlSerials(file: string, rootDer: Buffer): Promise<Set<string> | undefined> {
  return (await readRootCrl(file, rootDer))?.serials;
}

/** The root CRL at `file` (its DER too, for the bundle answer); undefined when there is none. */
export async function readRootCrl(file: string, rootDer: Buffer): Promise<(RootCrl & { der: Buffer }) | undefined> {
  if (!existsSync(file)) return undefined;
  const der = readFileSync(file);
  try {
    return { ...(await parseRootCrl(der, rootDer)), der };
  } catch (e) {
    throw new Error(`${file} is ${(e as Error).message}`);
  }
}
