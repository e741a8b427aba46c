/** Genuine Azure attested documents (test/fixtures/cloud-iid/azure, see its README). */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AttestedTrust } from '../../../src/join/azure/verify.js';
import { parseImdsTime } from '../../../src/join/azure/wire.js';
import { loadCaFile } from '../../../src/join/trust-files.js';
import { CLOUD_FIXTURES, requireFixture } from './aws-fixtures.js';

export const AZURE_FIXTURES = join(CLOUD_FIXTURES, 'azure');
export const ROOT_FILE = requireFixture(join(AZURE_FIXTURES, 'root', 'DigiCert_Global_Root_G2.pem'));
export const INTERMEDIATE_FILES = readdirSync(requireFixture(join(AZURE_FIXTURES, 'certs')))
  .sort()
  .map((f) => join(AZURE_FIXTURES, 'certs', f));

export interface AzureSample {
  name: string;
  der: Buffer;
  json: Buffer;
  /** The document's own createdOn: the time its chain was valid at. */
  createdOn: Date;
}

export function loadAzureSamples(): AzureSample[] {
  const dir = requireFixture(join(AZURE_FIXTURES, 'samples'));
  return readdirSync(dir)
    .sort()
    .map((name) => {
      const json = readFileSync(join(dir, name, 'document.json'));
      const doc = JSON.parse(json.toString('utf8')) as { timeStamp: { createdOn: string } };
      return {
        name,
        json,
        der: Buffer.from(readFileSync(join(dir, name, 'signature.b64'), 'utf8').trim(), 'base64'),
        createdOn: new Date(parseImdsTime(doc.timeStamp.createdOn)!),
      };
    });
}

export function genuineTrust(at: Date, over: Partial<AttestedTrust> = {}): AttestedTrust {
  return {
    anchors: loadCaFile(ROOT_FILE),
    intermediates: INTERMEDIATE_FILES.flatMap(loadCaFile),
    signerDomains: ['metadata.azure.com'],
    at,
    ...over,
  };
}
