/**
 * Where the agent delivers credentials for workloads. Each destination kind (files, TSS2 key
 * files, ssh, database, kubernetes secret) implements this one method; the renewal loop calls
 * `write` after every successful join/renew and on start (to repair a partial write).
 */

/** Everything a destination may need; PEM throughout. */
export interface IdentityMaterial {
  /** Leaf certificate followed by intermediates, leaf first. */
  certPem: string;
  /** PKCS#8 private key; absent when the key is non-exportable (TPM, PKCS#11). */
  keyPem?: string;
  /** File name for keyPem (default svid.key; svid.tss2.pem for TPM keys). */
  keyFile?: string;
  /** Trust bundle: CA roots, concatenated. */
  bundlePem: string;
}

export interface OutputDestination {
  /** Destination kind as written in the agent config, e.g. 'identity'. */
  readonly type: string;
  readonly path: string;
  /** Synchronous and all-or-nothing per file; throws a SigilError on refusal or I/O failure. */
  write(material: IdentityMaterial): void;
}
