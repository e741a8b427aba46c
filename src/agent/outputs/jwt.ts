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
      return {
        fields: { kind: 'jwt', audiences: cfg.audiences, ...(cfg.ttl !== undefined ? { ttl_s: cfg.ttl } : {}) },
      };
    },
    write(result) {
      if (!result.token || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(result.token))
        throw new SigilError('response_invalid', 'the issuer answer carries no JWT');
      // The token must name us: its `sub` is the SPIFFE ID the answer states (agent/credentials.ts
      // checked that one is ours). The answer itself is signed by the issuer, so reading the
      // claims without verifying the JWT's own signature is enough here.
      if (jwtSubject(result.token) !== result.spiffe_id)
        throw new SigilError('answer_mismatch', `the JWT-SVID's sub is not this agent's SPIFFE ID ${result.spiffe_id}`);
      writeOutputFiles(cfg, [{ name: 'token', data: result.token, mode: KEY_MODE }]);
    },
  };
}

function jwtSubject(token: string): unknown {
  try {
    return (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { sub?: unknown }).sub;
  } catch {
    return undefined;
  }
}
