/**
 * The agent half of the aws_iid join: fetch the instance identity document and its signature
 * from IMDS — IMDSv2 only (a session token from a PUT, then GETs carrying it; IMDSv1's plain
 * GETs are what SSRF bugs reach) — trying `rsa2048`, then `pkcs7`, then `signature` (a 404
 * moves on to the next), and sign the binding proof with the instance's binding key
 * (wire.ts). The endpoint is configurable so tests can point the agent at a local fake IMDS.
 */
import { SigilError } from '../../errors.js';
import type { Signer } from '../../keystore/signer.js';
import { describeHttpError, httpRequest, type HttpAnswer } from '../http.js';
import type { EvidenceContext, JoinMethodAgent } from '../types.js';
import { AWS_SIGNATURE_KINDS, IMDS_PATHS, bindingMessage, type AwsSignatureKind } from './wire.js';

export const DEFAULT_IMDS_ENDPOINT = 'http://169.254.169.254';
/** IMDSv2 session tokens may live 1 s … 6 h; one join needs seconds. */
const TOKEN_TTL_S = 60;

export interface AwsIidJoinAgentOptions {
  /** IMDS base URL (default http://169.254.169.254). */
  endpoint?: string;
  /** The instance's binding key (ES256): it never leaves the machine; the issuer binds the instance to it. */
  bindingKey: Signer;
  /** Which signatures to try, in order (default rsa2048, pkcs7, signature). */
  kinds?: readonly AwsSignatureKind[];
  timeoutMs?: number;
}

export class AwsIidJoinAgent implements JoinMethodAgent {
  readonly name = 'aws_iid';
  /** The document and the binding key outlive any identity: the agent joins again by itself. */
  readonly canReattest = true;
  readonly #endpoint: string;
  readonly #key: Signer;
  readonly #kinds: readonly AwsSignatureKind[];
  readonly #timeoutMs: number;

  constructor(o: AwsIidJoinAgentOptions) {
    if (o.bindingKey.algorithm !== 'ES256')
      throw new SigilError('config_invalid', 'the aws_iid binding key must be an ECDSA P-256 key');
    this.#endpoint = (o.endpoint ?? DEFAULT_IMDS_ENDPOINT).replace(/\/+$/, '');
    this.#key = o.bindingKey;
    this.#kinds = o.kinds ?? AWS_SIGNATURE_KINDS;
    this.#timeoutMs = o.timeoutMs ?? 5_000;
  }

  async #call(method: 'GET' | 'PUT', path: string, headers: Record<string, string>): Promise<HttpAnswer> {
    try {
      return await httpRequest({
        method,
        url: `${this.#endpoint}${path}`,
        headers,
        timeoutMs: this.#timeoutMs,
        maxBytes: 64 * 1024,
      });
    } catch (e) {
      throw new SigilError(
        'cloud_metadata_unavailable',
        `AWS IMDS at ${this.#endpoint} cannot be reached (${method} ${path}: ${describeHttpError(e)}); is this an EC2 instance with the metadata service enabled?`,
      );
    }
  }

  #refused(what: string, res: HttpAnswer): SigilError {
    const hint =
      res.status === 401
        ? ' (IMDSv2 token refused)'
        : res.status === 403
          ? ' (the instance metadata service is disabled for this instance)'
          : '';
    return new SigilError('cloud_metadata_unavailable', `AWS IMDS answered ${what} with HTTP ${res.status}${hint}`);
  }

  /** The document, the first signature kind IMDS has, and the kind. */
  async fetchSigned(): Promise<{ kind: AwsSignatureKind; document: Buffer; signature: Buffer }> {
    const t = await this.#call('PUT', IMDS_PATHS.token, {
      'x-aws-ec2-metadata-token-ttl-seconds': String(TOKEN_TTL_S),
    });
    if (t.status !== 200 || t.body.length === 0) throw this.#refused('the IMDSv2 token request', t);
    const auth = { 'x-aws-ec2-metadata-token': t.body.toString('utf8').trim() };
    const d = await this.#call('GET', IMDS_PATHS.document, auth);
    if (d.status !== 200) throw this.#refused('the identity document request', d);
    for (const kind of this.#kinds) {
      const s = await this.#call('GET', IMDS_PATHS[kind], auth);
      if (s.status === 404) continue;
      if (s.status !== 200) throw this.#refused(`the ${kind} request`, s);
      // A base64 body with line breaks (IMDS does not add PEM armour; tolerate it if present).
      const b64 = s.body
        .toString('utf8')
        .replace(/-----(BEGIN|END) [A-Z0-9 ]+-----/g, '')
        .replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64))
        throw new SigilError(
          'cloud_metadata_unavailable',
          `AWS IMDS answered the ${kind} request with something that is not base64`,
        );
      return { kind, document: d.body, signature: Buffer.from(b64, 'base64') };
    }
    throw new SigilError(
      'cloud_metadata_unavailable',
      `AWS IMDS has none of the signatures ${this.#kinds.join(', ')} (all answered 404)`,
    );
  }

  async evidence(ctx: EvidenceContext): Promise<Record<string, unknown>> {
    const s = await this.fetchSigned();
    const proof = await this.#key.sign(bindingMessage(ctx.requestId, ctx.spkiDer, s.document));
    return {
      kind: s.kind,
      document: s.document.toString('base64'),
      signature: s.signature.toString('base64'),
      binding_key: this.#key.publicKeySpki().toString('base64url'),
      binding_signature: proof.toString('base64url'),
    };
  }
}
