/**
 * The agent's workload issuer client (agent/workload/issuer-client.ts) checks a VERIFIED answer
 * against what it asked for before using it: the SVID must certify the key of its CSR and carry
 * the SPIFFE ID the answer names, it must be for the entry asked, and a JWT asked for sealed must
 * come back sealed, for the audiences asked. The link here stands in for the verified answer
 * (verification itself: protocol/verify-response tests and the integration tests).
 */
import { describe, expect, it } from 'vitest';
import type { IssuerLink } from '../../../src/agent/transports.js';
import type { Identity } from '../../../src/agent/state/index.js';
import { LinkWorkloadIssuer } from '../../../src/agent/workload/issuer-client.js';
import { SoftwareSigner } from '../../../src/keystore/index.js';
import { buildCsr } from '../../../src/pki/csr.js';
import { toPem } from '../../../src/pki/pem.js';
import { randomSerial } from '../../../src/pki/serial.js';
import { newAnswerKey, sealToAnswerKey } from '../../../src/protocol/answer-key.js';
import { b64u, type Jws } from '../../../src/protocol/jws.js';
import type { WorkloadResult } from '../../../src/protocol/workload-messages.js';
import { hierarchy } from '../pki/helpers.js';

const h = hierarchy();
const NOW = Date.now();

function cert(spiffeId: string, key: SoftwareSigner): string {
  const der = h.issuer.issueSvid({
    serial: randomSerial(),
    spkiDer: key.publicKeySpki(),
    spiffeId,
    notBefore: new Date(NOW - 60_000),
    notAfter: new Date(NOW + 3600_000),
  });
  return toPem('CERTIFICATE', der);
}

const nodeKey = SoftwareSigner.generate();
const identity = {
  instanceId: 'i-1',
  spiffeId: 'spiffe://example.org/bot/gw/i-1',
  bot: 'gw',
  chainPem: [cert('spiffe://example.org/bot/gw/i-1', nodeKey)],
  keyRef: JSON.stringify({ storage: 'software', pkcs8Pem: nodeKey.toPkcs8Pem() }),
  keyStorage: 'software',
  exportable: true,
  serial: '01',
  notBefore: NOW - 60_000,
  notAfter: NOW + 3600_000,
  generation: 1,
  joinMethod: 'token',
  issuedAt: NOW,
  renewAfter: NOW + 1800_000,
} as Identity;

/** A client whose link answers `answer(request payload)` as if verified. */
function clientAnswering(answer: (req: Record<string, unknown>) => Promise<WorkloadResult>): LinkWorkloadIssuer {
  const link = {
    workload: async (envelope: Jws) => answer(JSON.parse(b64u.decode(envelope.payload).toString('utf8'))),
    root: async () => toPem('CERTIFICATE', h.root.certDer),
  } as unknown as IssuerLink;
  return new LinkWorkloadIssuer({
    link,
    state: { getIdentity: () => identity, getBundle: () => undefined, getOutbox: () => [] },
    now: () => Date.now(),
  });
}

const x509 = (over: Partial<Extract<WorkloadResult, { action: 'x509' }>>, chain: string[]): WorkloadResult => ({
  action: 'x509',
  entry: 'web',
  spiffe_id: 'spiffe://example.org/web',
  serial: 'ab',
  chain,
  bundle: [toPem('CERTIFICATE', h.root.certDer)],
  not_before: NOW,
  not_after: NOW + 3600_000,
  ttl_s: 3600,
  requested_ttl_s: 3600,
  ttl_clamped: false,
  renew_after: NOW + 1800_000,
  ...over,
});

describe('workload issuer client: the answer must be what was asked', () => {
  it('signs the request with the current identity and names it; accepts the SVID for its own key', async () => {
    const key = SoftwareSigner.generate();
    let seen: Record<string, unknown> = {};
    const svid = await clientAnswering(async (req) => {
      seen = req;
      return x509({}, [cert('spiffe://example.org/web', key)]);
    }).signX509('web', toPem('CERTIFICATE REQUEST', await buildCsr(key)));
    expect(seen).toMatchObject({ op: 'workload', action: 'x509', entry: 'web', instance_id: 'i-1' });
    expect(svid).toMatchObject({ entryId: 'web', spiffeId: 'spiffe://example.org/web', serial: 'ab' });
  });

  it('refuses an SVID for another key than its CSR’s (answer_mismatch)', async () => {
    const key = SoftwareSigner.generate();
    const other = SoftwareSigner.generate();
    const c = clientAnswering(async () => x509({}, [cert('spiffe://example.org/web', other)]));
    await expect(c.signX509('web', toPem('CERTIFICATE REQUEST', await buildCsr(key)))).rejects.toMatchObject({
      code: 'answer_mismatch',
      message: expect.stringMatching(/another key/),
    });
  });

  it('refuses an SVID whose SPIFFE ID is not the one the answer names, or for another entry', async () => {
    const key = SoftwareSigner.generate();
    const csr = toPem('CERTIFICATE REQUEST', await buildCsr(key));
    await expect(
      clientAnswering(async () => x509({}, [cert('spiffe://example.org/db', key)])).signX509('web', csr),
    ).rejects.toMatchObject({ code: 'answer_mismatch' });
    await expect(
      clientAnswering(async () => x509({ entry: 'db' }, [cert('spiffe://example.org/web', key)])).signX509('web', csr),
    ).rejects.toMatchObject({ code: 'answer_mismatch' });
  });

  it('asks for every JWT with an answer key and refuses a token in clear or for other audiences', async () => {
    const jwt = (over: Partial<Extract<WorkloadResult, { action: 'jwt' }>>): WorkloadResult => ({
      action: 'jwt',
      entry: 'web',
      spiffe_id: 'spiffe://example.org/web',
      serial: 'cd',
      audience: ['vault'],
      issued_at_s: 1,
      expires_at: NOW + 300_000,
      issuer_url: 'https://issuer',
      ...over,
    });
    await expect(
      clientAnswering(async (req) => {
        expect(req.answer_key).toMatchObject({ kty: 'EC', crv: 'P-256' });
        return jwt({ token: 'a.b.c' });
      }).signJwt('web', ['vault']),
    ).rejects.toMatchObject({ code: 'response_invalid', message: expect.stringMatching(/unsealed/) });
    const sealedFor = async (req: Record<string, unknown>, aud: string[]) => {
      const { answerKeyObject } = await import('../../../src/protocol/answer-key.js');
      const key = answerKeyObject(req.answer_key as ReturnType<typeof newAnswerKey>['publicJwk']);
      return jwt({ audience: aud, token_jwe: await sealToAnswerKey('h.p.s', key, 'JWT') });
    };
    await expect(
      clientAnswering((req) => sealedFor(req, ['vault', 'aws'])).signJwt('web', ['vault']),
    ).rejects.toMatchObject({ code: 'answer_mismatch' });
    expect(await clientAnswering((req) => sealedFor(req, ['vault'])).signJwt('web', ['vault'])).toMatchObject({
      token: 'h.p.s',
      audience: ['vault'],
    });
  });
});
