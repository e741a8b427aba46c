/**
 * Genuine AWS instance identity documents (test/fixtures/cloud-iid/aws, see its README), and the
 * mutation loop the tests share.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SigilError } from '../../../src/errors.js';
import { BUNDLED_AWS_CERTS_DIR, CERT_SUBDIR } from '../../../src/join/aws-iid/certs.js';
import type { SignedDocument } from '../../../src/join/aws-iid/verify.js';
import type { AwsSignatureKind } from '../../../src/join/aws-iid/wire.js';
import { fromPem } from '../../../src/pki/pem.js';

export const CLOUD_FIXTURES = join(import.meta.dirname, '..', '..', 'fixtures', 'cloud-iid');
export const FIXTURES = join(CLOUD_FIXTURES, 'aws');
/** SHA-256 of AWS's per-region certificates as collected (README): the bundled copies must match. */
export const BUNDLED_CERTS_MANIFEST = join(FIXTURES, 'bundled-certs.sha256');

/**
 * The fixtures are part of the repository: a missing one is a broken checkout, and a test that
 * skipped would hide exactly the evidence it exists to check. So: fail, saying what is missing.
 */
export function requireFixture(path: string): string {
  if (!existsSync(path))
    throw new Error(
      `${path} is missing: the genuine cloud-document fixtures belong to the repository (test/fixtures/cloud-iid, see its README)`,
    );
  return path;
}

export interface Sample {
  name: string;
  kind: AwsSignatureKind;
  region: string;
  signed: SignedDocument;
  /**
   * When the sample is verified: the document's own pendingTime, never the wall clock, so the
   * tests pass the same in 2030 as today. AWS re-issued some region certificates for the same key
   * after these documents were made (the raw-signature RSA ones: valid 2024-04-29..2029-04-28);
   * then the moment the bundled certificate became valid stands in for pendingTime.
   */
  at: Date;
}

export function loadSamples(): Sample[] {
  const dir = requireFixture(join(FIXTURES, 'samples'));
  return readdirSync(dir)
    .sort()
    .map((name) => {
      const d = join(dir, name);
      const document = readFileSync(join(d, 'document.json'));
      const kind: AwsSignatureKind = existsSync(join(d, 'pkcs7.pem'))
        ? 'pkcs7'
        : existsSync(join(d, 'rsa2048.pem'))
          ? 'rsa2048'
          : 'signature';
      const signature =
        kind === 'signature'
          ? Buffer.from(readFileSync(join(d, 'signature.b64'), 'utf8').trim(), 'base64')
          : fromPem(readFileSync(join(d, `${kind}.pem`), 'utf8'));
      const doc = JSON.parse(document.toString('utf8')) as { region: string; pendingTime: string };
      const cert = new X509Certificate(
        readFileSync(join(BUNDLED_AWS_CERTS_DIR, CERT_SUBDIR[kind], `${doc.region}.pem`)),
      );
      const pending = new Date(doc.pendingTime);
      const validFrom = new Date(cert.validFrom);
      if (Number.isNaN(pending.getTime())) throw new Error(`${name}: document.json has no pendingTime`);
      return {
        name,
        kind,
        region: doc.region,
        signed: { kind, document, signature },
        at: pending > validFrom ? pending : validFrom,
      };
    });
}

export const newScratch = (): string => mkdtempSync(join(tmpdir(), 'sigil-aws-genuine-'));

export function refusal(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof SigilError)) throw e;
    return e.code;
  }
}

/**
 * One-byte changes of `buf`, each checked; returns the changes that were accepted.
 * 'full': every position changed twice (XOR 0x01 and XOR 0xFF). 'lean' (for the slow,
 * certificate-carrying Azure documents): every position changed once, the flipped bit rotating
 * with the position (XOR 1 << (i mod 8)), plus XOR 0xFF at every 7th position.
 */
export function acceptedMutations(
  buf: Buffer,
  check: (mutated: Buffer) => void,
  mode: 'full' | 'lean' = 'full',
): { accepted: string[]; codes: Set<string>; tried: number } {
  const accepted: string[] = [];
  const codes = new Set<string>();
  let tried = 0;
  for (let i = 0; i < buf.length; i++) {
    const xors = mode === 'full' ? [0x01, 0xff] : i % 7 === 0 ? [1 << (i % 8), 0xff] : [1 << (i % 8)];
    for (const x of xors) {
      const m = Buffer.from(buf);
      m[i]! ^= x;
      tried++;
      const code = refusal(() => check(m));
      if (code === undefined) accepted.push(`byte ${i} ^ 0x${x.toString(16)}`);
      else codes.add(code);
    }
  }
  return { accepted, codes, tried };
}

/** Generous: these loops run thousands of verifications, and CI machines are shared. */
export const MUTATION_TIMEOUT_MS = 300_000;

/** A certificate directory holding only `pem` as `kind`/`region`. */
export function certDirWith(scratch: string, kind: AwsSignatureKind, region: string, pem: string | Buffer): string {
  const dir = join(
    scratch,
    createHash('sha256')
      .update(pem)
      .update(kind + region)
      .digest('hex')
      .slice(0, 16),
  );
  mkdirSync(join(dir, CERT_SUBDIR[kind]), { recursive: true });
  writeFileSync(join(dir, CERT_SUBDIR[kind], `${region}.pem`), pem);
  return dir;
}
