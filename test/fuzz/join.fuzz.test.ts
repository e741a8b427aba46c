/**
 * Fuzzing the request path end to end, in process: JWS envelopes (parseJws) and the issuer's
 * join and renew operations (server/ops/join.ts, renew.ts) fed arbitrary JSON bodies, validly
 * signed envelopes with fuzzed payloads and evidence (token, x509 and tpm join rules are
 * configured so their parsers run), and renewals signed by a real identity with fuzzed
 * payloads, key attestations and x5c chains. handleJoin/handleRenew turn anything that is not
 * a SigilError into `internal`, so an `internal` refusal is a leak.
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { audienceOf, peekJwt } from '../../src/join/jwt-verify.js';
import { ekPublicHash } from '../../src/attest/ek.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import { buildCsr } from '../../src/pki/csr.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { b64u, parseJws, signJws, type Jws } from '../../src/protocol/jws.js';
import { TYP_REQUEST } from '../../src/protocol/messages.js';
import { renewRequestSchema } from '../../src/protocol/requests.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { handleJoin } from '../../src/server/ops/join.js';
import { handleRenew } from '../../src/server/ops/renew.js';
import { marshal, toSized } from '../../src/tpm/structures/codec.js';
import { publicFromKeyObject, publicKeySpki } from '../../src/tpm/structures/keys.js';
import { tpm2bPublic, tpmtPublic, type TpmtPublic } from '../../src/tpm/structures/public.js';
import { akTemplateEccP256, ekTemplateEccP256, signingKeyTemplateEccP256 } from '../../src/tpm/templates.js';
import { newRequestId } from '../../src/util/secret.js';
import { startIssuer, type Harness, type Identity } from '../integration/harness.js';
import { fuzzBytes, fuzzParams, fuzzTimeout, mustBeCoded, mustBeCodedAsync, mutated } from './harness.js';
import { pkiSeeds } from './seeds.js';

let h: Harness;
let signer: SoftwareSigner;
let csrPem: string;
let transportCsrPem: string;
let id: Identity;
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

const ekKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const akKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const area = (template: TpmtPublic, unique: TpmtPublic['unique']): Buffer =>
  Buffer.from(marshal(tpm2bPublic, toSized(tpmtPublic, { ...template, unique } as TpmtPublic)));
const ekPublic = area(ekTemplateEccP256(), publicFromKeyObject(ekKey.publicKey).unique);
const akPublic = area(akTemplateEccP256(), publicFromKeyObject(akKey.publicKey).unique);
let keyPublic: Buffer;

beforeAll(async () => {
  const s = pkiSeeds();
  h = await startIssuer();
  const ekHash = ekPublicHash(publicKeySpki(publicFromKeyObject(ekKey.publicKey)));
  const rootFile = joinPath(s.dir, 'fuzz-root.pem');
  writeFileSync(rootFile, toPem('CERTIFICATE', s.rootDer));
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `kind: join_rule\nname: fuzz-x509\nspec:\n  method: x509\n  bot: gw\n  x509:\n    ca_files: [${rootFile}]\n---\nkind: join_rule\nname: fuzz-tpm\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    allow: [ { ek_public_hash: "${ekHash}" } ]\n`,
  });
  signer = SoftwareSigner.generate();
  csrPem = toPem('CERTIFICATE REQUEST', await buildCsr(signer));
  transportCsrPem = toPem('CERTIFICATE REQUEST', await buildCsr(SoftwareSigner.generate()));
  keyPublic = area(
    signingKeyTemplateEccP256(),
    publicFromKeyObject(createPublicKey({ key: signer.publicKeySpki(), format: 'der', type: 'spki' })).unique,
  );
  id = await h.join();
}, 120_000);

afterAll(async () => {
  await h?.close();
});

/** An envelope whose shape is right but whose contents are anything. */
const looseEnvelope = fc.record(
  {
    protected: fc.oneof(
      fc.jsonValue().map((v) => b64u.encode(JSON.stringify(v))),
      fc.constant(b64u.encode(JSON.stringify({ alg: 'ES256', typ: TYP_REQUEST }))),
      fc.string(),
    ),
    payload: fc.oneof(
      fc.jsonValue().map((v) => b64u.encode(JSON.stringify(v))),
      fc.string(),
    ),
    signature: fc.oneof(
      fc.string(),
      fc.uint8Array({ maxLength: 96 }).map((u) => b64u.encode(Buffer.from(u))),
    ),
  },
  { requiredKeys: [] },
);
const anyBody = fc.oneof(
  fc.jsonValue(),
  looseEnvelope,
  fc.string().map((s) => ({ protected: s, payload: s, signature: s })),
);

/** Evidence for each configured method, valid-looking then mutated. */
function evidenceArb(): fc.Arbitrary<{ method: string; evidence: unknown }> {
  const s = pkiSeeds();
  const chain = [s.leafDer, s.certs[1]!];
  const publics = [ekPublic, akPublic, keyPublic];
  return fc.oneof(
    fc.string({ maxLength: 80 }).map((token) => ({ method: 'token', evidence: { token } })),
    fc.tuple(fuzzBytes(chain), fc.boolean()).map(([b, leafFirst]) => ({
      method: 'x509',
      evidence: { chain: leafFirst ? [b64(b), b64(chain[1]!)] : [b64(chain[0]!), b64(b)] },
    })),
    fc
      .tuple(
        fc.nat(2),
        mutated(publics, () => []),
      )
      .map(([slot, b]) => {
        const fields = [b64(ekPublic), b64(akPublic), b64(keyPublic)];
        fields[slot] = b64(b);
        return { method: 'tpm', evidence: { ek_public: fields[0], ak_public: fields[1], key_public: fields[2] } };
      }),
    fc.tuple(fc.nat(2), fuzzBytes(publics)).map(([slot, b]) => {
      const fields = [b64(ekPublic), b64(akPublic), b64(keyPublic)];
      fields[slot] = b64(b);
      return { method: 'tpm', evidence: { ek_public: fields[0], ak_public: fields[1], key_public: fields[2] } };
    }),
    fc.record({
      method: fc.constantFrom('token', 'x509', 'tpm', 'aws_iid', 'azure', 'gcp', 'oidc', 'nope'),
      evidence: fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 3 })),
    }),
  );
}

/** Replace, drop or add top-level payload fields. */
const fieldChange = fc.option(
  fc.record({
    key: fc.constantFrom(
      'v',
      'op',
      'request_id',
      'timestamp',
      'method',
      'csr',
      'ttl_s',
      'evidence',
      'key_storage',
      'transport_csr',
      'key_attestation',
      'extra',
    ),
    value: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant(undefined)),
  }),
  { freq: 2 },
);
function applyChange(p: Record<string, unknown>, c: { key: string; value: unknown } | null): Record<string, unknown> {
  if (c === null) return p;
  const out = { ...p };
  if (c.value === undefined) delete out[c.key];
  else out[c.key] = c.value;
  return out;
}

describe('JWS and the join operation', () => {
  it(
    'parseJws: arbitrary JSON values and loose envelopes',
    () => {
      fc.assert(
        fc.property(anyBody, (b) => mustBeCoded('parseJws', b, parseJws)),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it(
    'JWT tokens (oidc, gcp evidence): peekJwt and audienceOf',
    () => {
      const part = fc.oneof(
        fc.jsonValue({ maxDepth: 3 }).map((v) => b64u.encode(JSON.stringify(v))),
        fc.string({ maxLength: 40 }),
        fc.uint8Array({ maxLength: 40 }).map((u) => b64u.encode(Buffer.from(u))),
      );
      const token = fc.oneof(
        fc.tuple(part, part, part).map((p) => p.join('.')),
        fc.string({ maxLength: 200 }),
      );
      fc.assert(
        fc.property(token, (t) => mustBeCoded('peekJwt', t, (x) => audienceOf(peekJwt(x).claims))),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it(
    'handleJoin: arbitrary bodies (unsigned)',
    async () => {
      await fc.assert(
        fc.asyncProperty(anyBody, (b) => mustBeCodedAsync('handleJoin', b, (x) => handleJoin(h.ctx, x, null))),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'handleJoin: signed envelopes with fuzzed payloads and evidence (token, x509, tpm …)',
    async () => {
      const arb = fc.tuple(
        evidenceArb(),
        fieldChange,
        fc.nat(4).map((n) => n === 0),
      );
      await fc.assert(
        fc.asyncProperty(arb, async ([ev, change, transport]) => {
          const payload = applyChange(
            {
              v: 1,
              op: 'join',
              request_id: newRequestId(),
              timestamp: h.ctx.now(),
              method: ev.method,
              csr: csrPem,
              evidence: ev.evidence,
              ...(transport ? { transport_csr: transportCsrPem } : {}),
            },
            change,
          );
          const env = await signJws(signer, TYP_REQUEST, payload);
          await mustBeCodedAsync('handleJoin(signed)', { env, payload }, (x) => handleJoin(h.ctx, x.env, null));
        }),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'handleJoin: a fuzzed CSR, in a correctly shaped request',
    async () => {
      const s = pkiSeeds();
      await fc.assert(
        fc.asyncProperty(fuzzBytes(s.csrs), async (der) => {
          const payload = {
            v: 1,
            op: 'join',
            request_id: newRequestId(),
            timestamp: h.ctx.now(),
            method: 'token',
            csr: toPem('CERTIFICATE REQUEST', der),
            evidence: { token: 'x' },
          };
          const env = await signJws(signer, TYP_REQUEST, payload);
          await mustBeCodedAsync('handleJoin(csr)', der, () => handleJoin(h.ctx, env, null));
        }),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'handleJoin: x509 challenge answers (after a real round 1) with fuzzed proofs',
    async () => {
      const s = pkiSeeds();
      const requestId = newRequestId();
      const round1 = {
        v: 1,
        op: 'join',
        request_id: requestId,
        timestamp: h.ctx.now(),
        method: 'x509',
        csr: csrPem,
        evidence: { chain: [b64(s.leafDer), b64(s.certs[1]!)] },
      };
      const res = await handleJoin(h.ctx, await signJws(signer, TYP_REQUEST, round1), null);
      const challengeId = (
        JSON.parse(b64u.decode(res.payload).toString('utf8')) as { challenge: { challenge_id: string } }
      ).challenge.challenge_id;
      const answer = fc.record({
        challenge_id: fc.oneof(
          { weight: 5, arbitrary: fc.constant(challengeId) },
          { weight: 1, arbitrary: fc.string() },
        ),
        agent_nonce: fc.oneof(fc.constant(b64u.encode(Buffer.alloc(16, 7))), fc.string()),
        alg: fc.oneof(fc.constantFrom('ES256', 'ES384', 'RS256', 'PS256'), fc.string()),
        signature: fc.uint8Array({ minLength: 12, maxLength: 600 }).map((u) => b64u.encode(Buffer.from(u))),
        tpm: fc.option(fc.jsonValue({ maxDepth: 2 }), { freq: 4 }),
      });
      await fc.assert(
        fc.asyncProperty(answer, async (a) => {
          const evidence: Record<string, unknown> = { ...a };
          if (a.tpm === null) delete evidence.tpm;
          const payload = { ...round1, timestamp: h.ctx.now(), evidence };
          const env = await signJws(signer, TYP_REQUEST, payload);
          await mustBeCodedAsync('handleJoin(x509 answer)', payload, () => handleJoin(h.ctx, env, null));
        }),
        fuzzParams(0.3),
      );
    },
    fuzzTimeout(0.3),
  );

  it('the seeds reach deep: a tpm round 1 is answered with a challenge', async () => {
    const payload = {
      v: 1,
      op: 'join',
      request_id: newRequestId(),
      timestamp: h.ctx.now(),
      method: 'tpm',
      csr: csrPem,
      evidence: { ek_public: b64(ekPublic), ak_public: b64(akPublic), key_public: b64(keyPublic) },
    };
    const res = await handleJoin(h.ctx, await signJws(signer, TYP_REQUEST, payload), null);
    expect(JSON.parse(b64u.decode(res.payload).toString('utf8')).challenge.method).toBe('tpm');
  });
});

describe('the renew operation', () => {
  const chainDers = (): Buffer[] => id.chainPem.map((p) => fromPem(p));
  // The request names its signer when the protocol asks for it (instance and certificate serial).
  const named = (): Record<string, unknown> =>
    'serial' in renewRequestSchema.shape ? { instance_id: id.result.instance_id, serial: id.result.serial } : {};

  it(
    'handleRenew: arbitrary bodies (unsigned)',
    async () => {
      await fc.assert(
        fc.asyncProperty(anyBody, (b) => mustBeCodedAsync('handleRenew', b, (x) => handleRenew(h.ctx, x, null))),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'handleRenew: fuzzed x5c chains',
    async () => {
      const arb = fc.tuple(fuzzBytes(chainDers()), fc.nat(2));
      await fc.assert(
        fc.asyncProperty(arb, async ([der, where]) => {
          const x5c = chainDers();
          if (where < x5c.length) x5c[where] = der;
          else x5c.push(der);
          const payload = {
            v: 1,
            op: 'renew',
            request_id: newRequestId(),
            timestamp: h.ctx.now(),
            ...named(),
            csr: csrPem,
          };
          const env = await signJws(id.signer, TYP_REQUEST, payload, x5c);
          await mustBeCodedAsync('handleRenew(x5c)', der, () => handleRenew(h.ctx, env, null));
        }),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );

  it(
    'handleRenew: signed by the current identity, fuzzed payloads and key attestations',
    async () => {
      const attestation = fc.oneof(
        fc.jsonValue({ maxDepth: 2 }),
        fc.record({
          key_public: fuzzBytes([keyPublic]).map(b64),
          certify: fc.record({
            attest: fc.uint8Array({ maxLength: 200 }).map((u) => b64(u)),
            signature: fc.uint8Array({ maxLength: 80 }).map((u) => b64(u)),
          }),
        }),
      );
      const arb = fc.tuple(fieldChange, fc.option(attestation));
      await fc.assert(
        fc.asyncProperty(arb, async ([change, att]) => {
          const next = SoftwareSigner.generate();
          const csr = toPem('CERTIFICATE REQUEST', await buildCsr(next));
          const payload = applyChange(
            {
              v: 1,
              op: 'renew',
              request_id: newRequestId(),
              timestamp: h.ctx.now(),
              ...named(),
              csr,
              ...(att !== null ? { key_attestation: att } : {}),
            },
            change,
          );
          const env = await signJws(id.signer, TYP_REQUEST, payload, chainDers());
          let answered: Jws | undefined;
          await mustBeCodedAsync('handleRenew(signed)', payload, async () => {
            answered = undefined;
            answered = await handleRenew(h.ctx, env, null);
          });
          // A renewal that went through moves the identity on (the old one would now lock the instance).
          if (answered) {
            const result = JSON.parse(b64u.decode(answered.payload).toString('utf8')).result;
            id = { signer: next, chainPem: result.chain, result };
          }
        }),
        fuzzParams(0.3),
      );
    },
    fuzzTimeout(0.3),
  );
});
