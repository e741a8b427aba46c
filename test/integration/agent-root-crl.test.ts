/**
 * The thief of a revoked intermediate key cannot answer agents as the issuer once they hold the
 * root CRL (second review of rotate-intermediate): with the old key the thief makes a certificate
 * for spiffe://<td>/sigil/issuer and signs "issuer answers"; before, an agent accepted them (it
 * checked only the chain to the pinned root and the SPIFFE ID). Now the issuer's bundle answer
 * carries the root CRL, the agent's trust check keeps the newest the pinned root signed, and its
 * response verifier refuses a signer chaining through an intermediate the CRL lists. A real issuer
 * (restarted on its data directory after `rotate-intermediate --revoke-old`) and a real Agent.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Agent, loadAgentModules } from '../../src/agent/agent.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { REVOKED_SERIAL_SETTING } from '../../src/agent/credential-status.js';
import { ROOT_CRL_SETTING } from '../../src/agent/root-crl-state.js';
import { agentStatus } from '../../src/agent/status.js';
import { LAST_TRUST_CHECK_SETTING, readLastTrustCheck } from '../../src/agent/trust-check.js';
import { openAgentState } from '../../src/agent/state/index.js';
import { createRootCa, issueServerCert } from '../../src/pki/ca.js';
import { spkiPin } from '../../src/pki/chain.js';
import { CertificateIssuer } from '../../src/pki/issue.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { signJwsWithKey } from '../../src/protocol/jws.js';
import { PROTOCOL_VERSION, TYP_RESPONSE } from '../../src/protocol/messages.js';
import { paths } from '../../src/server/data-dir.js';
import { rootCrlFile } from '../../src/server/issuers/root-crl-file.js';
import { signRootCrl } from '../../src/server/issuers/root-crl.js';
import { rotateIntermediate } from '../../src/server/issuers/rotate-intermediate.js';
import { applyRegistry } from '../../src/server/issuers/runtime.js';
import { readPrivateKeyFile } from '../../src/server/key-file.js';
import { silentLogger } from '../../src/util/log.js';
import { startIssuer, type Harness } from './harness.js';

let h: Harness;
const tmp = mkdtempSync(join(tmpdir(), 'sigil-agent-root-crl-'));
beforeAll(async () => {
  h = await startIssuer();
});
afterAll(async () => {
  await h?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** A "bundle answer" signed by an issuer certificate the thief made under `inter`. */
function forgedBundle(inter: { certDer: Buffer; key: ReturnType<typeof readPrivateKeyFile> }): unknown {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const leaf = new CertificateIssuer({ caCertDer: inter.certDer, caKey: inter.key }).issueSvid({
    serial: Buffer.from('7f0102030405060708', 'hex'),
    spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
    spiffeId: 'spiffe://example.org/sigil/issuer',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3600_000),
  });
  const payload = {
    v: PROTOCOL_VERSION,
    op: 'bundle',
    request_id: null,
    issued_at: Date.now(),
    result: { trust_domain: 'example.org', roots: [h.rootPem], intermediates: [], trust_sequence: 4e9 },
  };
  return signJwsWithKey(privateKey, 'ES256', TYP_RESPONSE, payload, [leaf, inter.certDer]);
}

const cfgText = (issuer: string, token: string): string => `issuer: ${issuer}
ca_pin: ${spkiPin(new X509Certificate(h.rootPem))}
data_dir: ${join(tmp, 'data')}
ttl: 1h
join: { method: token, token: ${token} }
outputs:
  - { type: identity, path: ${join(tmp, 'id')} }
`;

/**
 * The thief's HTTPS server: a TLS certificate for the issuer SPIFFE ID under the stolen
 * intermediate; every request is refused `issuer_revoked` in an (unsigned) HTTPS error body.
 */
async function thiefServer(inter: { certDer: Buffer; key: ReturnType<typeof readPrivateKeyFile> }) {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const leaf = issueServerCert(new CertificateIssuer({ caCertDer: inter.certDer, caKey: inter.key }), {
    trustDomain: 'example.org',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    ttlDays: 1,
    spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
  });
  let requests = 0;
  const srv = https.createServer(
    {
      key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      cert: [toPem('CERTIFICATE', leaf), toPem('CERTIFICATE', inter.certDer)].join(''),
    },
    (_q, r) => {
      requests++;
      r.writeHead(403, { 'content-type': 'application/json' });
      r.end(JSON.stringify({ code: 'issuer_revoked', message: 'forged by the thief' }));
    },
  );
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as AddressInfo).port,
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        srv.closeAllConnections();
        srv.close(() => resolve());
      }),
  };
}

async function restart(): Promise<void> {
  const { dir, port } = h;
  await h.close({ keepDir: true });
  h = await startIssuer({ dir, port });
  h.ctx.intermediates!.useRootCrl(rootCrlFile(dir));
  await h.ctx.intermediates!.refresh();
  applyRegistry(h.ctx, h.ctx.intermediates!);
}

it('answers signed under a revoked intermediate: accepted before the agent has the root CRL, refused after', async () => {
  const token = await h.token();
  const cfg = parseAgentConfig(cfgText(`https://127.0.0.1:${h.port}`, token), join(tmp, 'agent.yaml'));
  const agent = new Agent(cfg, silentLogger(), {
    modules: await loadAgentModules(cfg),
    state: openAgentState(cfg.dataDir),
  });
  /** Another agent on the same state (its identity, its kept CRL), configured with this issuer URL and token. */
  const sameState = async (port: number, tok: string, file: string): Promise<Agent> =>
    new Agent(parseAgentConfig(cfgText(`https://127.0.0.1:${port}`, tok), join(tmp, file)), silentLogger(), {
      modules: await loadAgentModules(cfg),
      state: agent.state,
    });
  try {
    expect((await agent.tick()).action).toBe('joined');
    // The thief's copy of ca/, then the compromise rotation.
    const stolen = {
      certDer: fromPem(readFileSync(paths(h.dir).intCert, 'utf8'), 'CERTIFICATE'),
      key: readPrivateKeyFile(paths(h.dir).intKey),
    };
    await rotateIntermediate({ dataDir: h.dir, revokeOld: true });
    await restart();
    const verify = (body: unknown) => agent.link.verifier.responseOrError(body, 'bundle', null, null, h.rootPem);

    // The control for the HTTPS case below: before the agent has the CRL, the thief's unsigned
    // refusal is believed (the identity is marked revoked). Put back afterwards.
    const early = await thiefServer(stolen);
    try {
      const viaThief = await sameState(early.port, token, 'thief.yaml');
      const r = await viaThief.tick({ force: true });
      expect(r.action === 'failed' && r.error.code).toBe('reattest_required'); // a token agent: a new token needed
      expect(early.requests).toBe(1);
      expect(agent.state.getSetting(REVOKED_SERIAL_SETTING)).toBe(agent.state.getIdentity()!.serial);
      agent.state.setSetting(REVOKED_SERIAL_SETTING, '');
    } finally {
      await early.close();
    }

    // Without the CRL the agent cannot tell (the gap the review found).
    const forged = forgedBundle(stolen);
    expect(verify(forged).result.trust_sequence).toBe(4e9);

    // The agent re-joins (its renewal is refused issuer_revoked; the token is spent, so with a new one).
    // Its trust check takes the root CRL from the real issuer's bundle answer.
    // A cron pass (`run --once`): nothing due for the identity, then the trust check, which keeps
    // the CRL; it lists this identity's own intermediate, so the same pass treats the identity as
    // over (a token agent: a new token is needed) instead of reporting it healthy until its renewal.
    let pass = await agent.once();
    for (let i = 0; i < 3 && agent.state.getSetting(ROOT_CRL_SETTING) === undefined; i++) {
      const last = readLastTrustCheck(agent.state);
      if (last) agent.state.setSetting(LAST_TRUST_CHECK_SETTING, JSON.stringify({ ...last, next_at: 0 }));
      pass = await agent.once();
    }
    expect(pass.action === 'failed' && pass.error.code).toBe('reattest_required');
    const check = (await agent.trustCheck())!;
    expect(JSON.parse(agent.state.getSetting(ROOT_CRL_SETTING)!).serials).toContain(
      new X509Certificate(stolen.certDer).serialNumber.toLowerCase().replace(/^(00)+(?=.)/, ''),
    );
    // The same answer (its signer chain verified and remembered before) and a fresh one: refused.
    expect(() => verify(forged)).toThrow(/intermediate CA the pinned root revoked/);
    expect(() => verify(forgedBundle(stolen))).toThrow(/intermediate CA the pinned root revoked/);
    // The real issuer's answers (under the new intermediate) still pass, and so does its TLS chain
    // through the agent's own HTTPS client, now checked link by link against the CRL.
    const real = await h.request('GET', '/v1/bundle');
    expect(verify(real.json).result.trust_domain).toBe('example.org');
    const before = readLastTrustCheck(agent.state)!.at;
    await check.runNow();
    expect(readLastTrustCheck(agent.state)).toMatchObject({ error: null });
    expect(readLastTrustCheck(agent.state)!.at).toBeGreaterThan(before);

    // The CRL lists the intermediate this agent's own identity was issued under: the root says it
    // is over, without waiting for the renewal's refusal (half the identity's life away).
    expect(agentStatus(agent.state).issuer_revoked).toBe(true);
    expect(agent.state.getSetting(REVOKED_SERIAL_SETTING)).toBe('');
    // A token agent needs a new token; with one it joins under the new intermediate.
    const rejoined = await sameState(h.port, await h.token(), 'again.yaml');
    expect((await rejoined.tick()).action).toBe('joined');
    expect(agentStatus(agent.state).issuer_revoked).toBe(false);

    // Over HTTPS the thief needs no signature for a refusal: error bodies are unsigned, and its
    // TLS certificate (the issuer SPIFFE ID under the stolen intermediate) chains to the pinned
    // root. An agent (same state) pointed at the thief's server: refused by its TLS chain, the
    // identity untouched (before, the forged issuer_revoked made it unusable: a token agent
    // needed a new token).
    const thief = await thiefServer(stolen);
    try {
      const viaThief = await sameState(thief.port, token, 'thief.yaml');
      const r = await viaThief.tick({ force: true });
      expect(r.action === 'failed' && r.error).toMatchObject({
        code: 'response_invalid',
        message: expect.stringMatching(/TLS chain passes through intermediate CA serial .* the pinned root revoked/),
      });
      expect(thief.requests).toBe(0);
      expect(agent.state.getSetting(REVOKED_SERIAL_SETTING)).toBe('');
    } finally {
      await thief.close();
    }

    // Kept, never replaced by an older CRL, and a CRL another root signed is refused.
    const kept = agent.state.getSetting(ROOT_CRL_SETTING);
    const b64 = readFileSync(rootCrlFile(h.dir)).toString('base64');
    expect(await agent.rootCrl.offer(b64, fromPem(h.rootPem, 'CERTIFICATE'))).toBe(false);
    // A CRL that lists the intermediate of the issuer serving it is never kept (a corrected one
    // could not reach the agent afterwards: it would come signed under that intermediate).
    const stolenSerial = new X509Certificate(stolen.certDer).serialNumber.toLowerCase().replace(/^(00)+(?=.)/, '');
    await expect(agent.rootCrl.offer(b64, fromPem(h.rootPem, 'CERTIFICATE'), [stolenSerial])).rejects.toThrow(
      /lists the intermediate of the issuer that served it/,
    );
    const otherRoot = createRootCa({ trustDomain: 'example.org' });
    const foreign = await signRootCrl(
      h.ctx.stores,
      { certDer: otherRoot.certDer, key: otherRoot.key, trustDomain: 'example.org' },
      { now: Date.now() + 60_000 },
    );
    await expect(
      agent.rootCrl.offer(foreign.der.toString('base64'), fromPem(h.rootPem, 'CERTIFICATE')),
    ).rejects.toThrow(/not a CRL signed by the pinned root/);
    expect(agent.state.getSetting(ROOT_CRL_SETTING)).toBe(kept);
  } finally {
    agent.state.close();
  }
});
