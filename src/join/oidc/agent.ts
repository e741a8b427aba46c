/**
 * The agent half of the oidc join: get a fresh token from where the platform puts it, at every
 * join (tokens are short-lived and single use), and send it.
 *
 *   github      GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=<aud> with
 *               "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" → { "value": "<jwt>" }
 *               (the workflow needs `permissions: id-token: write`)
 *   env         a variable the CI sets (GitLab `id_tokens:`, CircleCI's $CIRCLE_OIDC_TOKEN_V2)
 *   file        a file re-read at each join (a Kubernetes projected service-account token,
 *               which the kubelet rotates)
 */
import { readFileSync } from 'node:fs';
import { SigilError } from '../../errors.js';
import { describeHttpError, httpRequest } from '../http.js';
import type { EvidenceContext, JoinMethodAgent } from '../types.js';

export type TokenSource =
  | { kind: 'github'; audience: string; env?: NodeJS.ProcessEnv; ca?: string }
  | { kind: 'env'; name: string; env?: NodeJS.ProcessEnv }
  | { kind: 'file'; path: string };

export class OidcJoinAgent implements JoinMethodAgent {
  readonly name = 'oidc';
  /** A fresh token can be had at any time: the agent joins again by itself. */
  readonly canReattest = true;
  /**
   * Join again (with a fresh token) at every renewal instead of renewing: the issuer re-checks
   * the job's or pod's claims each time, and a CI job ends when its credentials should.
   */
  readonly rejoinOnRenew = true;
  readonly #source: TokenSource;

  constructor(source: TokenSource) {
    this.#source = source;
  }

  async token(): Promise<string> {
    const s = this.#source;
    switch (s.kind) {
      case 'file': {
        try {
          return readFileSync(s.path, 'utf8').trim();
        } catch (e) {
          throw new SigilError(
            'cloud_metadata_unavailable',
            `cannot read the OIDC token file ${s.path}: ${(e as NodeJS.ErrnoException).code ?? 'error'} (is the projected service-account token volume mounted?)`,
          );
        }
      }
      case 'env': {
        const v = (s.env ?? process.env)[s.name];
        if (v === undefined || v.trim() === '')
          throw new SigilError(
            'config_invalid',
            `the environment variable ${s.name} that should hold the OIDC token is not set`,
          );
        return v.trim();
      }
      case 'github':
        return githubToken(s);
    }
  }

  async evidence(_ctx: EvidenceContext): Promise<Record<string, unknown>> {
    return { token: await this.token() };
  }
}

async function githubToken(s: Extract<TokenSource, { kind: 'github' }>): Promise<string> {
  const env = s.env ?? process.env;
  const url = env.ACTIONS_ID_TOKEN_REQUEST_URL;
  const bearer = env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
  if (!url || !bearer) {
    throw new SigilError(
      'config_invalid',
      'ACTIONS_ID_TOKEN_REQUEST_URL/ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: run inside a GitHub Actions job with `permissions: id-token: write`',
    );
  }
  const u = new URL(url);
  u.searchParams.set('audience', s.audience);
  let res;
  try {
    res = await httpRequest({
      url: u.toString(),
      headers: { authorization: `bearer ${bearer}`, accept: 'application/json; api-version=2.0' },
      ...(s.ca !== undefined ? { ca: s.ca } : {}),
    });
  } catch (e) {
    throw new SigilError(
      'cloud_metadata_unavailable',
      `the GitHub Actions token service cannot be reached (${describeHttpError(e)})`,
    );
  }
  if (res.status !== 200)
    throw new SigilError('cloud_metadata_unavailable', `the GitHub Actions token service answered HTTP ${res.status}`);
  let value: unknown;
  try {
    value = (JSON.parse(res.body.toString('utf8')) as { value?: unknown }).value;
  } catch {
    value = undefined;
  }
  if (typeof value !== 'string')
    throw new SigilError(
      'cloud_metadata_unavailable',
      'the GitHub Actions token service answered without a token ("value")',
    );
  return value;
}
