/**
 * `sigil ctl ca crl`: the issuer's CRL for a relying party's config (mosquitto `crlfile`, nginx
 * `ssl_crl`, PostgreSQL `ssl_crl_file`, `openssl verify -CRLfile`), PEM by default.
 *
 *   local  (--data-dir)  derives and signs a CRL now from the store with the data directory's
 *                        intermediate, continuing the issuer's cRLNumber (./state.ts), so it
 *                        works while the issuer is down and beside a running one;
 *   remote (--server)    fetches GET /v1/crl over TLS to the pinned root, from the issuer whose
 *                        certificate carries its SPIFFE ID (as agents check it).
 */
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { PeerCertificate } from 'node:tls';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { SigilError } from '../../errors.js';
import { expectedIssuerId } from '../../pki/chain.js';
import { toPem } from '../../pki/pem.js';
import { HttpsIssuerClient } from '../../transport/https/client.js';
import { loadCaMaterial, openIssuerStores } from '../data-dir.js';
import { CrlPublisher } from './publisher.js';
import { crlFiles } from './state.js';

/** What `ctl ca crl --format json` prints about a CRL. */
export interface CrlSummary {
  crl_number: string;
  this_update: string;
  next_update: string | null;
  revoked: Array<{ serial: string; revoked_at: string; instance?: string; cause?: string }>;
}

export function crlPem(der: Buffer): string {
  return toPem('X509 CRL', der);
}

/** Read back what a CRL says (for the summary; the signature was made, or came over pinned TLS). */
export function summarizeCrl(der: Buffer): CrlSummary {
  const crl = pkijs.CertificateRevocationList.fromBER(der);
  const num = crl.crlExtensions?.extensions.find((e) => e.extnID === '2.5.29.20');
  let crlNumber = '';
  if (num) {
    const n = asn1js.fromBER(num.extnValue.valueBlock.valueHexView).result as asn1js.Integer;
    crlNumber = BigInt(`0x${Buffer.from(n.valueBlock.valueHexView).toString('hex') || '0'}`).toString();
  }
  return {
    crl_number: crlNumber,
    this_update: crl.thisUpdate.value.toISOString(),
    next_update: crl.nextUpdate ? crl.nextUpdate.value.toISOString() : null,
    revoked: (crl.revokedCertificates ?? []).map((e) => ({
      serial: Buffer.from(e.userCertificate.valueBlock.valueHexView)
        .toString('hex')
        .replace(/^(00)+(?=.)/, ''),
      revoked_at: e.revocationDate.value.toISOString(),
    })),
  };
}

/** Local mode: a CRL signed now from the data directory's store and intermediate. */
export async function localCrl(dataDir: string): Promise<{ der: Buffer; summary: CrlSummary }> {
  const ca = loadCaMaterial(dataDir);
  const stores = openIssuerStores(dataDir);
  try {
    const publisher = new CrlPublisher({
      issuer: { certDer: ca.intermediateDer, key: ca.intermediateKey },
      stores,
      files: crlFiles(dataDir),
    });
    const c = await publisher.publish('sigil ctl ca crl');
    const summary = summarizeCrl(c.der);
    const why = new Map(c.entries.map((e) => [e.serial, e]));
    summary.revoked = summary.revoked.map((r) => {
      const e = why.get(r.serial);
      return e ? { ...r, instance: e.instanceId, cause: e.cause } : r;
    });
    return { der: c.der, summary };
  } finally {
    await stores.close();
  }
}

/** Remote mode: GET /v1/crl from the issuer at `url`, whose root matches `pin`. */
export async function fetchCrl(url: string, pin: string): Promise<{ der: Buffer; summary: CrlSummary }> {
  const client = new HttpsIssuerClient({ url, pin });
  let rootPem: string;
  try {
    rootPem = await client.ensureRoot();
  } finally {
    client.close();
  }
  const want = expectedIssuerId(new X509Certificate(rootPem));
  const der = await new Promise<Buffer>((resolve, reject) => {
    const req = https.get(
      new URL('/v1/crl', url),
      {
        ca: rootPem,
        agent: false,
        timeout: 30_000,
        checkServerIdentity: (_host: string, peer: PeerCertificate) =>
          (peer.subjectaltname ?? '').split(', ').includes(`URI:${want}`)
            ? undefined
            : new SigilError('pin_mismatch', `the server certificate does not carry the issuer SPIFFE ID ${want}`),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > 16 * 1024 * 1024) req.destroy(new SigilError('response_invalid', 'CRL larger than 16 MiB'));
          else chunks.push(c);
        });
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          if (res.statusCode === 200) return resolve(body);
          let err: SigilError;
          try {
            err = SigilError.fromWire(JSON.parse(body.toString('utf8')));
          } catch {
            err = new SigilError('response_invalid', `GET /v1/crl answered HTTP ${res.statusCode}`);
          }
          reject(err);
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new SigilError('issuer_unreachable', `GET ${url}/v1/crl timed out`)));
    req.on('error', (e) =>
      reject(e instanceof SigilError ? e : new SigilError('issuer_unreachable', `GET ${url}/v1/crl: ${e.message}`)),
    );
  });
  let summary: CrlSummary;
  try {
    summary = summarizeCrl(der);
  } catch (e) {
    throw new SigilError('response_invalid', `GET /v1/crl did not return a CRL: ${(e as Error).message}`);
  }
  return { der, summary };
}
