/**
 * A certificate serial as revocation lists are compared by: lowercase hex, no leading zero bytes
 * (X509Certificate.serialNumber is uppercase and keeps them; a CRL entry's INTEGER may not).
 * Apart from ./root-crl.ts so that checking a serial does not load pkijs.
 */
export function serialKey(hex: string): string {
  return hex.toLowerCase().replace(/^(00)+(?=.)/, '');
}
