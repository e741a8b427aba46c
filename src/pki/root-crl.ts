/**
 * The root CA's CRL (RFC 5280 §5): the intermediates the root revoked (`sigil server
 * rotate-intermediate --revoke-old`, `retire-issuer --revoke`; server/issuers/root-crl.ts signs
 * it). Read by the issuer from its data directory and by the agent from the signed bundle answer
 * (agent/trust-check.ts), so that neither trusts a chain through a revoked intermediate. It is
 * believed only when the pinned root signed it: forging one needs the root key.
 */
import * as pkijs from 'pkijs';
import { serialKey } from './serial-key.js';

export interface RootCrl {
  /** Serials of the revoked certificates: lowercase hex, no leading zero bytes (see {@link serialKey}). */
  serials: Set<string>;
  /** cRLNumber (RFC 5280 §5.2.3), when present: a later CRL has a larger one. */
  crlNumber: bigint | undefined;
  thisUpdate: number;
}

/** Parse and verify `der` against the root certificate; throws when it is not a CRL the root signed. */
export async function parseRootCrl(der: Buffer, rootDer: Buffer): Promise<RootCrl> {
  const crl = pkijs.CertificateRevocationList.fromBER(der);
  const root = pkijs.Certificate.fromBER(rootDer);
  if (!(await crl.verify({ issuerCertificate: root }))) throw new Error('not a CRL signed by the pinned root CA');
  const numberExt = crl.crlExtensions?.extensions.find((e) => e.extnID === '2.5.29.20');
  let crlNumber: bigint | undefined;
  if (numberExt?.parsedValue instanceof Object && 'valueBlock' in (numberExt.parsedValue as object)) {
    const hex = Buffer.from(
      (numberExt.parsedValue as { valueBlock: { valueHexView: Uint8Array } }).valueBlock.valueHexView,
    ).toString('hex');
    crlNumber = hex.length > 0 ? BigInt(`0x${hex}`) : undefined;
  }
  return {
    serials: new Set(
      (crl.revokedCertificates ?? []).map((e) =>
        serialKey(Buffer.from(e.userCertificate.valueBlock.valueHexView).toString('hex')),
      ),
    ),
    crlNumber,
    thisUpdate: crl.thisUpdate.value.getTime(),
  };
}
