/**
 * The join side's caches, one set per issuer: created with the issuer's join methods
 * (join/server-methods.ts createJoinMethods) and handed to each method's factory. Nothing is
 * cached at module level, so two issuers in one process — or two tests with different
 * configurations — never see each other's key sets, CA files or certificates.
 *
 * Every cache is bounded and keyed so a changed file or a new key set is picked up (see each
 * module: rule-files.ts, trust-files.ts, jwt-keyset.ts, jwt-discovery.ts, aws-iid/certs.ts).
 */
import { createAwsCertCache, type AwsCertCache } from './aws-iid/certs.js';
import { createDiscoveryCache, type DiscoveryCache } from './jwt-discovery.js';
import { createKeySetCache, type KeySetCache } from './jwt-keyset.js';
import type { RuleFileCache } from './rule-files.js';
import { createTrustFileCache, type TrustFileCache } from './trust-files.js';

export interface JoinCaches {
  /** Text files a rule names (CA bundles for HTTPS fetches, …). */
  readonly ruleText: RuleFileCache<string>;
  /** Parsed CA and CRL files (x509, azure). */
  readonly trustFiles: TrustFileCache;
  /** JWKS of token issuers (oidc, gcp, azure managed identity). */
  readonly keySets: KeySetCache;
  /** OIDC discovery documents (oidc). */
  readonly discovery: DiscoveryCache;
  /** AWS's region certificates (aws_iid). */
  readonly awsCerts: AwsCertCache;
}

export function createJoinCaches(): JoinCaches {
  return {
    ruleText: new Map(),
    trustFiles: createTrustFileCache(),
    keySets: createKeySetCache(),
    discovery: createDiscoveryCache(),
    awsCerts: createAwsCertCache(),
  };
}
