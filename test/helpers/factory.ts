/**
 * Helpers for factory tests: a fleet of manufactured swtpms (one shared manufacturer CA), the
 * device side of an x509 join with the IDevID key in the TPM, and an `openssl ca` directory
 * around Sigil's factory CA for revocation (CRLs) — the factory CA is plain PEM files, so the
 * real openssl can sign its CRL.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509JoinAgent } from '../../src/join/x509/agent.js';
import { x509JoinAgentFromConfig } from '../../src/join/x509/config.js';
import { createLocalCa, createSwtpm, type SharedLocalCa, type SwtpmInstance } from './swtpm.js';
import { OpensslPki, type OpensslCaDir } from './openssl-pki.js';

export interface Fleet {
  ca: SharedLocalCa;
  tpms: SwtpmInstance[];
  destroy(): Promise<void>;
}

/** Manufacture and start `n` swtpms, `group` at a time (2 cores: swtpm_setup is CPU-bound). */
export async function startFleet(n: number, dir: string, group = 3): Promise<Fleet> {
  const ca = await createLocalCa({ dir: join(dir, 'manufacturer-ca'), manufacturer: 'Sigil Test TPMs' });
  const tpms: SwtpmInstance[] = [];
  const fleet: Fleet = {
    ca,
    tpms,
    async destroy() {
      await Promise.all(tpms.map((t) => t.destroy().catch(() => undefined)));
      ca.destroy();
    },
  };
  try {
    // The first manufacture creates the CA; the others may then run side by side.
    const first = await createSwtpm({ localCa: ca, dir: join(dir, 'tpm-00') });
    await first.start();
    tpms.push(first);
    for (let i = 1; i < n; i += group) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(group, n - i) }, async (_, k) => {
          const t = await createSwtpm({ localCa: ca, dir: join(dir, `tpm-${String(i + k).padStart(2, '0')}`) });
          await t.start();
          return t;
        }),
      );
      tpms.push(...batch);
    }
  } catch (e) {
    await fleet.destroy();
    throw e;
  }
  return fleet;
}

/** The device side exactly as the agent config builds it: `join.x509: { cert, key_uri: "tpm:…" }`. */
export function tpmDeviceAgent(certFile: string, tcti: string, handle = 0x81000100): X509JoinAgent {
  return x509JoinAgentFromConfig({ cert: certFile, key_uri: `tpm:handle=0x${handle.toString(16)};tcti=${tcti}` });
}

/** An `openssl ca` directory around a factory CA made by `sigil factory init-ca` (file key). */
export function factoryCaDir(dir: string, caCert: string, caKey: string): OpensslCaDir {
  const pki = new OpensslPki(dir);
  return pki.caDir({ name: 'factory', cert: caCert, key: caKey, pem: readFileSync(caCert, 'utf8') });
}
