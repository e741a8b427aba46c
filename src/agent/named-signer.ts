/**
 * What a request signed by the agent's identity says about its signer: the instance id (last
 * segment of the SPIFFE ID spiffe://<td>/bot/<bot>/<instance>) and the serial of the leaf in
 * its x5c — read with the issuer's own DER reader, so both sides spell the serial the same way.
 * The issuer refuses a payload naming another signer (server/ops/authenticate.ts
 * checkNamedSigner).
 */
import { SigilError } from '../errors.js';
import { readCertificate, spiffeIdOfFields } from '../pki/cert-reader.js';
import { fromPem } from '../pki/pem.js';
import { serialHex } from '../pki/serial.js';

export interface NamedSigner {
  instance_id: string;
  serial: string;
}

/** The leaf's serial, SPIFFE ID (if exactly one URI SAN) and SubjectPublicKeyInfo. */
export function readLeaf(
  pem: string,
  code: 'config_invalid' | 'answer_mismatch' = 'config_invalid',
): { serial: string; spiffeId: string | undefined; spki: Buffer } {
  const fields = readCertificate(fromPem(pem, 'CERTIFICATE', code), code, 'identity certificate');
  return { serial: serialHex(fields.serial), spiffeId: spiffeIdOfFields(fields, code), spki: Buffer.from(fields.spki) };
}

export function namedSigner(chainPem: readonly string[]): NamedSigner {
  const leaf = readLeaf(chainPem[0] ?? '');
  const instance = leaf.spiffeId?.split('/').at(-1);
  if (!instance)
    throw new SigilError('config_invalid', 'the cached identity certificate carries no SPIFFE ID; join again');
  return { instance_id: instance, serial: leaf.serial };
}
