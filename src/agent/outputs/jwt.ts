/**
 * The `jwt` output: a JWT-SVID (ES256, sub = the SPIFFE ID, aud = the configured audiences,
 * short exp) in `token` (0600, a bearer credential; no trailing newline, as Kubernetes writes
 * projected tokens, so `jwt=@token` style readers get exactly the token). Refreshed at half its
 * lifetime like every output; verifiers fetch the keys by OIDC discovery (docs/vault.md).
 */
import { SigilError } from '../../errors.js';
import type { CredentialOutputConfig } from './config.js';
import { KEY_MODE, writeOutputFiles, type CredentialDestination, type Prepared } from './credential-output.js';

type JwtConfig = Extract<CredentialOutputConfig, { type: 'jwt' }>;

export function jwtOutput(cfg: JwtConfig): CredentialDestination {
  return {
    config: cfg,
    files: ['token'],
    async prepare(): Promise<Prepared> {
      return { fields: { kind: 'jwt', audiences: cfg.audiences, ...(cfg.ttl !== undefined ? { ttl_s: cfg.ttl } : {}) } };
    },
    write(result) {
      if (!result.token || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(result.token)) throw new SigilError('response_invalid', 'the issuer answer carries no JWT');
      writeOutputFiles(cfg, [{ name: 'token', data: result.token, mode: KEY_MODE }]);
    },
  };
}
