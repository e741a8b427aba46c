/**
 * What the agent's Workload API needs from the issuer (issue #17), as one narrow port: the
 * Workload API server (this folder) is written against it, the issuer client that implements it
 * over the agent's configured transports lives beside it (./issuer-client.ts). Everything here
 * is decided by the issuer: which registration entries apply to this node, and whether a CSR
 * may be signed for one (the issuer re-checks that the entry applies to the requesting node).
 */

/** A registration entry (`kind: workload` resource on the issuer) that applies to this node. */
export interface WorkloadEntry {
  /** The resource name: stable across syncs, the key of everything cached for it. */
  id: string;
  /** spiffe://<trust domain>/…, never a node (bot) identity. */
  spiffeId: string;
  /** All must match the caller: `unix:uid:1000`, `unix:user:web`, `unix:path:/usr/bin/envoy`, `systemd:unit:web.service`, … */
  selectors: string[];
  /** Requested X.509-SVID lifetime (the issuer clamps it). */
  ttlS: number;
  dnsNames: string[];
  /** Audiences a JWT-SVID may be minted for; empty: none. */
  jwtAudiences: string[];
}

export interface WorkloadSvid {
  entryId: string;
  spiffeId: string;
  /** PEM: the SVID first, then the intermediate(s) up to (not including) the root. */
  chainPem: string;
  serial: string;
  notAfter: number;
}

export interface WorkloadJwtSvid {
  entryId: string;
  spiffeId: string;
  audience: string[];
  token: string;
  expiresAt: number;
}

/** Trust bundles of this trust domain, as the issuer's signed `bundle` answer carries them. */
export interface WorkloadBundles {
  trustDomain: string;
  /** PEM roots (X.509 bundle). */
  x509RootsPem: string;
  /** JWKS JSON of the JWT-SVID signing keys (JWT bundle). */
  jwtJwks: string;
}

export interface WorkloadIssuerPort {
  /** The entries that apply to this node, decided by the issuer from its registrations. */
  fetchEntries(): Promise<WorkloadEntry[]>;
  /** Sign `csrPem` (a key the agent made for this entry) as the entry's X.509-SVID. */
  signX509(entryId: string, csrPem: string): Promise<WorkloadSvid>;
  /** Mint a JWT-SVID for the entry; every audience must be allowed by the entry. */
  signJwt(entryId: string, audience: string[]): Promise<WorkloadJwtSvid>;
  fetchBundles(): Promise<WorkloadBundles>;
}
