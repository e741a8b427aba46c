/**
 * The object identifiers Sigil's PKI layer writes or recognises, named as in the RFC that
 * defines them. Dotted strings; der.oid() encodes these once, at load, into a constant table.
 */
export const OID = {
  // RFC 5280 §4.2.1 certificate extensions (id-ce = 2.5.29)
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  // RFC 5280 §4.2.1.12 key purposes
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  // RFC 5280 Appendix A.1 / X.520 naming attributes
  commonName: '2.5.4.3',
  serialNumber: '2.5.4.5',
  countryName: '2.5.4.6',
  localityName: '2.5.4.7',
  stateOrProvinceName: '2.5.4.8',
  organizationName: '2.5.4.10',
  organizationalUnitName: '2.5.4.11',
  // RFC 5480 §2.1.1 EC public keys and named curves
  ecPublicKey: '1.2.840.10045.2.1',
  secp256r1: '1.2.840.10045.3.1.7',
  secp384r1: '1.3.132.0.34',
  // RFC 8017 Appendix A / RFC 4055 RSA
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  // RFC 5758 §3.2 ECDSA signatures (parameters absent)
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
  // RFC 2985 §5.4.2 PKCS#9 extensionRequest attribute in a CSR
  extensionRequest: '1.2.840.113549.1.9.14',
} as const;
