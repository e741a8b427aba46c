/**
 * JWT-SVIDs checked the way Vault's JWT auth (or any OIDC relying party) checks them: a verifier
 * that knows only the issuer URL and trusts the Sigil CA for TLS fetches
 * `<issuer>/.well-known/openid-configuration`, follows `jwks_uri` (jose createRemoteJWKSet over
 * HTTPS) and verifies. It accepts the jwt output's token and rejects an expired one, one for
 * another audience and one signed by another key.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import https from 'node:https';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createRemoteJWKSet, customFetch, errors, jwtVerify, type JWTVerifyResult } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { credentialAgent, type CredentialAgent } from '../helpers/credential-agent.js';
import { startIssuer, type Harness } from '../integration/harness.js';

let h: Harness;
let agent: CredentialAgent;

/** fetch over node:https trusting only `caPem` (the relying party's oidc_discovery_ca_pem). */
function fetchTrusting(caPem: string) {
  return (url: string): Promise<Response> =>
    new Promise((resolve, reject) => {
      https
        .get(url, { ca: caPem }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve(
              new Response(Buffer.concat(chunks), {
                status: res.statusCode ?? 0,
                headers: res.headers as Record<string, string>,
              }),
            ),
          );
        })
        .on('error', reject);
    });
}

/** An OIDC verifier configured with nothing but the issuer URL, an audience and the CA to trust. */
async function oidcVerifier(
  issuer: string,
  audience: string,
  caPem: string,
): Promise<(token: string) => Promise<JWTVerifyResult>> {
  const fetchCa = fetchTrusting(caPem);
  const conf = (await (await fetchCa(`${issuer}/.well-known/openid-configuration`)).json()) as {
    issuer: string;
    jwks_uri: string;
  };
  expect(conf.issuer).toBe(issuer);
  const jwks = createRemoteJWKSet(new URL(conf.jwks_uri), { [customFetch]: (u: string) => fetchCa(u) });
  return (token) => jwtVerify(token, jwks, { issuer, audience, algorithms: ['ES256'] });
}

beforeAll(async () => {
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `
kind: role
name: vault-client
spec: { max_ttl: 1h, allowed_outputs: [jwt], jwt_audiences: [vault, aws] }
---
kind: bot
name: jbot
spec: { roles: [vault-client] }
`,
  });
  agent = await credentialAgent(h, { bot: 'jbot' });
});

afterAll(async () => {
  agent?.close();
  await h?.close();
});

describe('JWT-SVID verified through OIDC discovery', () => {
  it('accepts the jwt output token: sub = SPIFFE ID, aud, short exp, kid = JWK thumbprint', async () => {
    const dir = join(agent.dir, 'jwt');
    const [o] = await agent.outputs([{ type: 'jwt', path: dir, audiences: ['vault'], ttl: '5m' }]).refresh();
    expect(o).toMatchObject({ action: 'issued' });
    expect(statSync(join(dir, 'token')).mode & 0o777).toBe(0o600);
    const token = readFileSync(join(dir, 'token'), 'utf8');
    expect(token).not.toMatch(/\n/);
    const verify = await oidcVerifier(h.ctx.publicUrl!, 'vault', h.rootPem);
    const { payload, protectedHeader } = await verify(token);
    expect(payload.sub).toBe(agent.state.getIdentity()!.spiffeId);
    expect(payload.aud).toBe('vault');
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(protectedHeader.kid).toBe(h.ctx.credentials.jwt.kid);
  });

  it('rejects a token for another audience', async () => {
    const token = readFileSync(join(agent.dir, 'jwt', 'token'), 'utf8');
    const verify = await oidcVerifier(h.ctx.publicUrl!, 'aws', h.rootPem);
    await expect(verify(token)).rejects.toBeInstanceOf(errors.JWTClaimValidationFailed);
    await expect(verify(token)).rejects.toThrow(/unexpected "aud" claim value/);
  });

  it('rejects an expired token', async () => {
    const dir = join(agent.dir, 'jwt-old');
    h.clock.offsetMs = -2 * 3600_000;
    h.ctx.skewMs = 3 * 3600_000;
    try {
      const [o] = await agent.outputs([{ type: 'jwt', path: dir, audiences: ['vault'], ttl: '1m' }]).refresh();
      expect(o).toMatchObject({ action: 'issued' });
    } finally {
      h.clock.offsetMs = 0;
      h.ctx.skewMs = 5 * 60_000;
    }
    const verify = await oidcVerifier(h.ctx.publicUrl!, 'vault', h.rootPem);
    await expect(verify(readFileSync(join(dir, 'token'), 'utf8'))).rejects.toBeInstanceOf(errors.JWTExpired);
  });

  it('rejects a token signed by another key, whatever kid it claims', async () => {
    const good = readFileSync(join(agent.dir, 'jwt', 'token'), 'utf8');
    const [header, payload] = good.split('.');
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const forged = `${header}.${payload}.${cryptoSign('sha256', Buffer.from(`${header}.${payload}`), { key: other, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
    const verify = await oidcVerifier(h.ctx.publicUrl!, 'vault', h.rootPem);
    await expect(verify(forged)).rejects.toBeInstanceOf(errors.JWSSignatureVerificationFailed);
    const otherKid = Buffer.from(JSON.stringify({ alg: 'ES256', kid: 'someone-else', typ: 'JWT' })).toString(
      'base64url',
    );
    const forged2 = `${otherKid}.${payload}.${cryptoSign('sha256', Buffer.from(`${otherKid}.${payload}`), { key: other, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
    await expect(verify(forged2)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
  });

  it('the issuer refuses an audience beyond the role', async () => {
    const [o] = await agent.outputs([{ type: 'jwt', path: join(agent.dir, 'jwt-gcp'), audiences: ['gcp'] }]).refresh();
    expect(o!.action === 'failed' && [o.error.code, o.error.message]).toEqual([
      'role_denied',
      'role vault-client does not allow audience gcp (jwt_audiences)',
    ]);
  });

  it('discovery is not trusted without the Sigil CA (TLS is verified)', async () => {
    await expect(oidcVerifier(h.ctx.publicUrl!, 'vault', generateSelfSigned())).rejects.toThrow(
      /certificate|self.signed|unable to verify/i,
    );
  });
});

/** Any other CA: a throwaway self-signed certificate. */
function generateSelfSigned(): string {
  return execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      '/dev/null',
      '-subj',
      '/CN=other',
      '-days',
      '1',
    ],
    { encoding: 'utf8' },
  );
}
