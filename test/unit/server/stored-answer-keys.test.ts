/**
 * A stored SSH/JWT answer is replayed only while every signing key it carries is still published
 * (src/server/credentials/stored-answer-keys.ts). The attack: two issuers share one store (one
 * idempotency table); a compromise rotation reaches issuer Q first; issuer P, which has not learned
 * yet, answers a request with the stolen key — after Q's withdrawal time, so Q's time check alone
 * would replay P's answer when the agent resends the request to Q. Here P and Q are two issuer
 * contexts on the same data directory's SQLite database, as two `sigil server start` processes are.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildCredentialRequest, type CredentialAskFields } from '../../../src/agent/credential-request.js';
import { namedSigner } from '../../../src/agent/named-signer.js';
import { SigilError } from '../../../src/errors.js';
import { SoftwareSigner } from '../../../src/keystore/index.js';
import { buildCsr } from '../../../src/pki/csr.js';
import { fromPem, toPem } from '../../../src/pki/pem.js';
import { signJws, type Jws } from '../../../src/protocol/jws.js';
import { TYP_REQUEST } from '../../../src/protocol/messages.js';
import { publishedJwks } from '../../../src/server/credentials/authorities.js';
import { assertStoredAnswerKeysPublished } from '../../../src/server/credentials/stored-answer-keys.js';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import { loadCaMaterial, openIssuerStores } from '../../../src/server/data-dir.js';
import { createIssuerContext, type IssuerContext } from '../../../src/server/issuer.js';
import { KeyReloader } from '../../../src/server/key-reload.js';
import { handleCredential } from '../../../src/server/ops/credential.js';
import { rotateKey } from '../../../src/server/rotate-key.js';
import type { Stores } from '../../../src/server/store/types.js';
import { parseCertificateLine } from '../../../src/ssh/certificate.js';
import { formatAuthorizedKey, sshPublicKeyFromKeyObject } from '../../../src/ssh/public-key.js';
import { silentLogger } from '../../../src/util/log.js';
import { newRequestId } from '../../../src/util/secret.js';
import { answerResult } from '../../helpers/racing-early-checks.js';
import { startIssuer, type Harness, type Identity } from '../../integration/harness.js';

const POLICY = `
kind: role
name: creds
spec: { max_ttl: 1h, allowed_outputs: [identity, ssh_user, jwt, database], ssh_logins: [deploy], jwt_audiences: [vault], db_users: [app] }
---
kind: bot
name: carrier
spec: { roles: [creds] }
`;

let h: Harness;
let peer: IssuerContext;
let peerStores: Stores;
let id: Identity;
beforeEach(async () => {
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', { yaml: POLICY });
  id = await h.join({ token: await h.token({ bot: 'carrier' }) });
  // P: a second issuer on the same store, which read its keys before any rotation and never reloads.
  peerStores = openIssuerStores(h.dir);
  // The same seal key: issuers of one store share audit.key, which the seal key derives from.
  peer = createIssuerContext({
    ca: loadCaMaterial(h.dir),
    stores: peerStores,
    log: silentLogger(),
    now: Date.now,
    answerSeal: h.ctx.answerSeal,
  });
  peer.publicUrl = h.ctx.publicUrl;
});
afterEach(async () => {
  await peerStores?.close();
  await h?.close();
});

/** Q (h.ctx) takes the files of a rotate-key step at once, as on SIGHUP. */
async function rotateAtQ(key: string, o: { overlapS?: number; step?: 'stage' | 'activate' } = {}): Promise<void> {
  await rotateKey({ dataDir: h.dir, key, ...o });
  new KeyReloader({
    dataDir: h.dir,
    trustDomain: 'example.org',
    target: h.ctx,
    log: silentLogger(),
    now: Date.now,
  }).reload();
}

const ask = (fields: CredentialAskFields) =>
  buildCredentialRequest({ current: id.signer, chainPem: id.chainPem, now: Date.now(), fields });
/** As an agent before answer keys asks over HTTPS: no answer_key, so the token comes back in clear. */
async function askInClear(fields: CredentialAskFields): Promise<{ envelope: Jws }> {
  const payload = {
    v: 1,
    op: 'credential',
    request_id: newRequestId(),
    timestamp: Date.now(),
    ...namedSigner(id.chainPem),
    ...fields,
  };
  const x5c = id.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
  return { envelope: await signJws(id.signer, TYP_REQUEST, payload, x5c) };
}
const jwtAsk: CredentialAskFields = { kind: 'jwt', audiences: ['vault'] };
const sshAsk = (): CredentialAskFields => ({
  kind: 'ssh_user',
  logins: ['deploy'],
  public_key: formatAuthorizedKey(sshPublicKeyFromKeyObject(generateKeyPairSync('ed25519').publicKey).blob),
});

const codeOf = async (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => (e as SigilError).code,
  );

describe('an answer a peer signed with a withdrawn key, resent to an issuer that learned earlier', () => {
  it('JWT-SVID, in clear (HTTPS) and sealed to the answer key (MQTT): not replayed; a new request is signed by the new key', async () => {
    await rotateAtQ('jwt', { overlapS: 0 });
    const fresh = h.ctx.credentials.jwt.kid;
    expect(peer.credentials.jwt.kid).not.toBe(fresh);
    for (const confidential of [true, false]) {
      const req = confidential ? await askInClear(jwtAsk) : await ask(jwtAsk);
      const atPeer = await handleCredential(peer, req.envelope, null, { confidential });
      expect(
        answerResult<{ token?: string; token_jwe?: string }>(atPeer)[confidential ? 'token' : 'token_jwe'],
      ).toBeDefined();
      await expect(handleCredential(h.ctx, req.envelope, null, { confidential })).rejects.toMatchObject({
        code: 'signing_key_withdrawn',
        message: expect.stringMatching(/its JWT-SVID was signed by key .* no longer publishes/),
      });
      // The peer itself still replays its own answer: it has not learned (its own check passes).
      expect(answerResult(await handleCredential(peer, req.envelope, null, { confidential }))).toEqual(
        answerResult(atPeer),
      );
    }
    const again = await askInClear(jwtAsk);
    const token = answerResult<{ token: string }>(
      await handleCredential(h.ctx, again.envelope, null, { confidential: true }),
    ).token;
    expect(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid).toBe(fresh);
  });

  it('SSH certificate: carrying the withdrawn host CA line, or signed by the withdrawn user CA: not replayed', async () => {
    // The host CA withdrawn: P's user certificate is signed by the user CA Q still uses, but the
    // answer carries the stolen host CA's line (for known_hosts).
    await rotateAtQ('ssh-host', { overlapS: 0 });
    const req = await ask(sshAsk());
    await handleCredential(peer, req.envelope, null);
    await expect(handleCredential(h.ctx, req.envelope, null)).rejects.toMatchObject({
      code: 'signing_key_withdrawn',
      message: expect.stringMatching(/carries an SSH host CA line/),
    });

    await rotateAtQ('ssh-user', { overlapS: 0 });
    const req2 = await ask(sshAsk());
    const atPeer = answerResult<{ certificate: string }>(await handleCredential(peer, req2.envelope, null));
    expect(parseCertificateLine(atPeer.certificate).signatureKey.blob).toEqual(
      sshPublicKeyFromKeyObject(peer.credentials.sshUser.signingPublicKey).blob,
    );
    await expect(handleCredential(h.ctx, req2.envelope, null)).rejects.toMatchObject({
      code: 'signing_key_withdrawn',
      message: expect.stringMatching(/its certificate was signed by an SSH user CA key/),
    });
    // A new request: Q's answer, replayed by Q.
    const req3 = await ask(sshAsk());
    const atQ = await handleCredential(h.ctx, req3.envelope, null);
    expect(answerResult(await handleCredential(h.ctx, req3.envelope, null))).toEqual(answerResult(atQ));
  });

  it('a planned rotation: the previous key is retired but still trusted, so its answers are replayed', async () => {
    await rotateAtQ('jwt', { step: 'stage' });
    await rotateAtQ('jwt', { step: 'activate' });
    expect(publishedJwks(h.ctx.credentials, Date.now()).map((k) => k.kid)).toContain(peer.credentials.jwt.kid);
    const req = await askInClear(jwtAsk);
    const atPeer = await handleCredential(peer, req.envelope, null, { confidential: true });
    expect(answerResult(await handleCredential(h.ctx, req.envelope, null, { confidential: true }))).toEqual(
      answerResult(atPeer),
    );
  });
});

describe('answers of kinds no rotatable key signs', () => {
  it('a resent database credential request is answered from the store (its answer is kept compacted)', async () => {
    const req = await ask({
      kind: 'database',
      db_user: 'app',
      csr: toPem('CERTIFICATE REQUEST', await buildCsr(SoftwareSigner.generate())),
    });
    const first = await handleCredential(h.ctx, req.envelope, null);
    await rotateAtQ('jwt', { overlapS: 0 }); // a withdrawal known: the database answer is still replayed
    expect(answerResult(await handleCredential(h.ctx, req.envelope, null))).toEqual(answerResult(first));
  });
});

describe('assertStoredAnswerKeysPublished', () => {
  const none = { certificates: { get: async () => undefined } } as unknown as Pick<Stores, 'certificates'>;
  const check = (response: unknown) =>
    codeOf(assertStoredAnswerKeysPublished(h.ctx.credentials, none, 'r1', JSON.stringify(response), Date.now()));

  it('passes answers of other kinds and JWT answers whose key it cannot tell', async () => {
    expect(await check({ result: { kind: 'database', chain: ['x'] } })).toBeUndefined();
    expect(await check({ result: { action: 'x509' } })).toBeUndefined();
    expect(await check({ result: { kind: 'jwt', serial: 'ab', token_jwe: 'x' } })).toBeUndefined();
  });

  it('refuses what is not a response payload, and an SSH answer whose certificate does not parse', async () => {
    expect(await codeOf(assertStoredAnswerKeysPublished(h.ctx.credentials, none, 'r1', '{', Date.now()))).toBe(
      'stored_answer_invalid',
    );
    expect(await check({ result: null })).toBe('stored_answer_invalid');
    expect(await check({ result: { kind: 'ssh_user', certificate: 'ssh-ed25519-cert-v01@openssh.com AAAA' } })).toBe(
      'stored_answer_invalid',
    );
  });

  it('a JWT kid read from the token header, else from the certificate record', async () => {
    const header = (kid: string) => Buffer.from(JSON.stringify({ alg: 'ES256', kid })).toString('base64url');
    const kid = h.ctx.credentials.jwt.kid;
    expect(await check({ result: { kind: 'jwt', token: `${header(kid)}.e30.sig` } })).toBeUndefined();
    expect(await check({ result: { kind: 'jwt', token: `${header('other')}.e30.sig` } })).toBe('signing_key_withdrawn');
    expect(await check({ result: { action: 'jwt', token: `${header('other')}.e30.sig` } })).toBe(
      'signing_key_withdrawn',
    );
    const recorded = (spkiHash: string) =>
      ({ certificates: { get: async (s: string) => (s === 'ab' ? { spkiHash } : undefined) } }) as unknown as Pick<
        Stores,
        'certificates'
      >;
    const sealed = JSON.stringify({ result: { kind: 'jwt', serial: 'ab', token_jwe: 'x' } });
    const at = (spkiHash: string) =>
      codeOf(assertStoredAnswerKeysPublished(h.ctx.credentials, recorded(spkiHash), 'r1', sealed, Date.now()));
    expect(await at(`kid:${kid}`)).toBeUndefined();
    expect(await at('kid:other')).toBe('signing_key_withdrawn');
  });
});
