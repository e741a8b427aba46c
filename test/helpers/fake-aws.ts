/**
 * A stand-in for AWS's instance identity signing, in AWS's exact formats, made with openssl:
 * per region a self-signed DSA certificate (the `pkcs7` document: PKCS#7 SignedData streamed
 * with indefinite lengths, DSA with SHA-1, signed attributes, no certificates) and self-signed
 * RSA-2048 certificates (`rsa2048`: the same with SHA-256; `signature`: raw PKCS#1 v1.5 SHA-256
 * over the document), laid out like AWS's published set (certs/<kind>/<region>.pem) so a join
 * rule's certs_dir can point at it — and a fake IMDS serving them with the IMDSv2 token flow.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { openssl } from './openssl-pki.js';
import { startHttpServer, type LoopbackServer } from './loopback-servers.js';

export type AwsKind = 'rsa2048' | 'pkcs7' | 'signature';

export interface DocumentFields {
  accountId: string;
  region: string;
  instanceId: string;
  imageId?: string;
  instanceType?: string;
  pendingTime?: string;
}

/** A document as IMDS serves it: pretty JSON with " : ", no trailing newline. */
export function awsDocument(f: DocumentFields): Buffer {
  const full = {
    accountId: f.accountId,
    architecture: 'x86_64',
    availabilityZone: `${f.region}a`,
    billingProducts: null,
    devpayProductCodes: null,
    marketplaceProductCodes: null,
    imageId: f.imageId ?? 'ami-0123456789abcdef0',
    instanceId: f.instanceId,
    instanceType: f.instanceType ?? 't3.micro',
    kernelId: null,
    pendingTime: f.pendingTime ?? new Date(Date.now() - 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    privateIp: '10.0.0.10',
    ramdiskId: null,
    region: f.region,
    version: '2017-09-30',
  };
  return Buffer.from(JSON.stringify(full, null, 2).replace(/": /g, '" : '));
}

export class FakeAwsSigner {
  readonly certsDir: string;
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
    this.certsDir = join(dir, 'certs');
    for (const k of ['dsa', 'rsa2048', 'rsa']) mkdirSync(join(this.certsDir, k), { recursive: true });
    const params = join(dir, 'dsa-params.pem');
    openssl([
      'genpkey',
      '-genparam',
      '-algorithm',
      'DSA',
      '-pkeyopt',
      'dsa_paramgen_bits:1024',
      '-pkeyopt',
      'dsa_paramgen_q_bits:160',
      '-out',
      params,
    ]);
  }

  #keyFor(kind: 'dsa' | 'rsa2048' | 'rsa', region: string): { key: string; cert: string } {
    return { key: join(this.#dir, `${kind}-${region}.key`), cert: join(this.certsDir, kind, `${region}.pem`) };
  }

  /** Create the three certificates of `region` (self-signed, like AWS's). */
  addRegion(region: string): void {
    const subj = `/C=US/ST=Washington State/L=Seattle/O=Sigil Test Amazon Web Services/CN=${region}`;
    for (const kind of ['dsa', 'rsa2048', 'rsa'] as const) {
      const { key, cert } = this.#keyFor(kind, region);
      if (kind === 'dsa') openssl(['genpkey', '-paramfile', join(this.#dir, 'dsa-params.pem'), '-out', key]);
      else openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key]);
      openssl([
        'req',
        '-x509',
        '-new',
        '-key',
        key,
        '-subj',
        subj,
        '-days',
        '3650',
        '-sha256',
        '-set_serial',
        `0x${randomBytes(8).toString('hex')}`,
        '-config',
        this.#reqConfig(),
        '-out',
        cert,
      ]);
    }
  }

  #reqConfig(): string {
    const f = join(this.#dir, 'req.cnf');
    writeFileSync(f, '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n');
    return f;
  }

  /** Replace the certs of `region`'s `kind` with those of `from` (a wrongly configured directory). */
  copyRegionCert(kind: 'dsa' | 'rsa2048' | 'rsa', from: string, to: string, dir = this.certsDir): void {
    copyFileSync(join(this.certsDir, kind, `${from}.pem`), join(dir, kind, `${to}.pem`));
  }

  /** Sign `document` as AWS does for `kind`; PKCS#7 as DER (BER), a raw signature as bytes. */
  sign(document: Buffer, kind: AwsKind, region: string): Buffer {
    const docFile = join(this.#dir, `doc-${randomBytes(6).toString('hex')}.json`);
    writeFileSync(docFile, document);
    const out = `${docFile}.sig`;
    if (kind === 'signature') {
      openssl(['dgst', '-sha256', '-sign', this.#keyFor('rsa', region).key, '-out', out, docFile]);
    } else {
      const k = this.#keyFor(kind === 'pkcs7' ? 'dsa' : 'rsa2048', region);
      openssl([
        'smime',
        '-sign',
        '-binary',
        '-nodetach',
        '-stream',
        '-nocerts',
        '-nosmimecap',
        '-md',
        kind === 'pkcs7' ? 'sha1' : 'sha256',
        '-signer',
        k.cert,
        '-inkey',
        k.key,
        '-in',
        docFile,
        '-outform',
        'DER',
        '-out',
        out,
      ]);
    }
    return readFileSync(out);
  }
}

/** Base64 wrapped at 64 columns, as IMDS serves pkcs7/rsa2048 (no PEM armour). */
export function imdsBase64(der: Buffer): string {
  return der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trimEnd();
}

export interface FakeImds {
  server: LoopbackServer;
  url: string;
  /** Serve this instance's document (signed for every kind in `kinds`). */
  setInstance(f: DocumentFields, kinds?: readonly AwsKind[]): void;
  /** Issued IMDSv2 session tokens. */
  tokens: Set<string>;
  /** When true, every GET is answered 401 as if its session token were wrong. */
  refuseTokens: boolean;
  close(): Promise<void>;
}

/**
 * IMDS with IMDSv2 only: PUT /latest/api/token (X-aws-ec2-metadata-token-ttl-seconds 1..21600)
 * gives a session token; every GET needs a valid one (missing or wrong → 401, as with
 * `HttpTokens: required`). A kind not enabled answers 404.
 */
export async function startFakeImds(signer: FakeAwsSigner): Promise<FakeImds> {
  const tokens = new Set<string>();
  const state = { refuseTokens: false };
  let doc: Buffer = Buffer.alloc(0);
  let sigs: Partial<Record<AwsKind, string>> = {};
  const server = await startHttpServer((req, url) => {
    if (url.pathname === '/latest/api/token') {
      if (req.method !== 'PUT') return { status: 405 };
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return { status: 400 };
      const t = randomBytes(24).toString('base64');
      tokens.add(t);
      return { body: t };
    }
    if (req.method !== 'GET') return { status: 405 };
    const t = req.headers['x-aws-ec2-metadata-token'];
    if (typeof t !== 'string' || !tokens.has(t) || state.refuseTokens) return { status: 401 };
    const p = url.pathname.replace('/latest/dynamic/instance-identity/', '');
    if (p === 'document') return { body: doc, headers: { 'content-type': 'text/plain' } };
    const s = sigs[p as AwsKind];
    return s === undefined ? { status: 404 } : { body: s, headers: { 'content-type': 'text/plain' } };
  });
  return {
    server,
    url: server.url,
    tokens,
    get refuseTokens() {
      return state.refuseTokens;
    },
    set refuseTokens(v: boolean) {
      state.refuseTokens = v;
    },
    setInstance(f, kinds = ['rsa2048', 'pkcs7', 'signature']) {
      doc = awsDocument(f);
      sigs = Object.fromEntries(
        kinds.map((k) => [
          k,
          k === 'signature'
            ? signer.sign(doc, k, f.region).toString('base64')
            : imdsBase64(signer.sign(doc, k, f.region)),
        ]),
      );
    },
    close: () => server.close(),
  };
}
