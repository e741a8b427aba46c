/**
 * After a compromise, `sigil server rotate-intermediate --revoke-old` (docs/runbook.md "After a
 * compromise") gives the issuer a new intermediate CA and revokes the old one. A TPM agent whose
 * identity was issued under the old one must neither wait for its expiry nor for a person: its
 * next renewal is refused `issuer_revoked`, which ends the identity at once
 * (REVOKED_SERIAL_SETTING, src/agent/credential-status.ts), and the same pass joins again BY
 * ITSELF — a fresh TPM attestation with its EK, a new AK and the measured boot; there is no token
 * anywhere in its config — and it ends up with an identity under the NEW intermediate.
 * test/integration/agent-issuer-revoked.test.ts covers the token agent (which needs a person and
 * a new token); this is the re-attesting path end to end: the built `sigil` CLI (dist/) as issuer
 * and agent, a real swtpm with a simulated boot, the root key kept offline as the runbook says
 * (--root-key), and openssl judging both chains against the root CRL the rotation signed.
 */
import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  auditRows,
  applyResources,
  RESOURCES,
  sigil,
  sigilJson,
  startIssuer,
  tempDir,
  type RunningIssuer,
} from '../helpers/cli.js';
import { openAgentState } from '../../src/agent/state/index.js';
import { LAST_TRUST_CHECK_SETTING } from '../../src/agent/trust-check.js';
import { startAttestingAgent } from '../helpers/attesting-agent.js';
import { createLocalCa, simulateBoot, startSwtpm, type SharedLocalCa, type SwtpmInstance } from '../helpers/swtpm.js';

const exec = promisify(execFile);

/** openssl verify's verdict on a chain: its exit status and what it printed. */
function opensslVerify(args: string[]): Promise<{ ok: boolean; out: string }> {
  return exec('openssl', ['verify', ...args]).then(
    (r) => ({ ok: true, out: r.stdout + r.stderr }),
    (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
  );
}

/** The key identifiers of a PEM certificate: its SKI and the AKI naming its issuer's key. */
function keyIds(pem: string): { ski?: string; aki?: string } {
  const c = new x509.X509Certificate(pem);
  const ski = c.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const aki = c.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  return { ...(ski ? { ski } : {}), ...(aki ? { aki } : {}) };
}

describe('a TPM agent after rotate-intermediate --revoke-old (swtpm)', () => {
  const tmp = tempDir('sigil-tpm-revoked-');
  let issuer: RunningIssuer;
  let ca: SharedLocalCa;
  let tpm: SwtpmInstance;
  const file = (name: string): string => join(tmp.path, name);
  const config = file('agent.yaml');
  const identity = file('identity');
  const svid = join(identity, 'svid.pem');
  const caFile = (name: string): string => join(issuer.dataDir, 'ca', name);

  const instances = (): Promise<Array<Record<string, any>>> =>
    sigilJson(['ctl', '--data-dir', issuer.dataDir, 'instances', 'ls']);
  /** The CRL the issuer serves (GET /v1/crl), signed by its current intermediate, written as PEM. */
  const servedCrl = async (out: string): Promise<string> => {
    await sigilJson(['ctl', '--server', issuer.url, '--ca-pin', issuer.pin, 'ca', 'crl', '--out', out]);
    return out;
  };

  beforeAll(async () => {
    ca = await createLocalCa();
    tpm = await startSwtpm({ localCa: ca });
    const eventLog = file('boot.log');
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    issuer = await startIssuer(tmp.path);
    await applyResources(
      issuer,
      tmp.path,
      `${RESOURCES}---\nkind: join_rule\nname: racks\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles[0]}, ${ca.caFiles[1]}]\n    firmware_profiles: [lab-gateway-v1]\n`,
    );
    // No token: the only way this agent can join, then or now, is its TPM.
    writeFileSync(
      config,
      `issuer: ${issuer.url}\nca_pin: ${issuer.pin}\ndata_dir: ${file('agent')}\n` +
        `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: ${eventLog} } }\nkey_storage: tpm\n` +
        `outputs:\n  - { type: identity, path: ${identity} }\n`,
    );
  }, 120_000);
  afterAll(async () => {
    await issuer?.stop();
    await tpm?.destroy();
    ca?.destroy();
    tmp.cleanup();
  });

  it('the renewal is refused issuer_revoked and the agent re-attests by itself under the new intermediate', async () => {
    // 1. The TPM join, under the first intermediate.
    const joined = await sigilJson(['agent', 'run', '--config', config, '--once']);
    expect(joined).toMatchObject({ result: 'joined', key_storage: 'tpm', exportable: false, generation: 1 });
    const oldIntPem = readFileSync(caFile('intermediate.pem'), 'utf8');
    const oldInt = new X509Certificate(oldIntPem);
    const oldLeaf = new X509Certificate(readFileSync(svid));
    expect(oldLeaf.serialNumber.toLowerCase()).toBe(joined.serial);
    expect(oldLeaf.checkIssued(oldInt)).toBe(true);
    copyFileSync(svid, file('old-leaf.pem'));
    // The old intermediate's own CRL, for openssl's whole-chain check of the old leaf below.
    const oldIntCrl = await servedCrl(file('old-int-crl.pem'));
    const [before] = await instances();
    expect(before).toMatchObject({ join_method: 'tpm', generation: 1, serial: joined.serial, locked: false });

    // 2. The compromise drill of the runbook: the root key is offline (brought in for the run),
    //    the issuer is stopped (a running one would stop by itself within ~5 s), rotated with
    //    --revoke-old, and started again on the same data dir and port.
    const rootKey = file('offline-root.key');
    copyFileSync(caFile('root.key'), rootKey);
    rmSync(caFile('root.key'));
    await issuer.stop();
    const rotated = await sigilJson([
      'server',
      'rotate-intermediate',
      '--data-dir',
      issuer.dataDir,
      '--root-key',
      rootKey,
      '--revoke-old',
      '--reason',
      'host stolen',
    ]);
    // Kept (outside the data directory) for the second rotation below; the temp dir goes at the end.
    expect(rotated).toMatchObject({
      old: { name: 'primary', status: 'revoked' },
      new: { name: 'primary-2' },
      rootCrlListed: ['primary'],
    });
    await issuer.restart();
    const newIntPem = readFileSync(caFile('intermediate.pem'), 'utf8');
    const newInt = new X509Certificate(newIntPem);
    expect(newInt.subject).not.toBe(oldInt.subject);
    expect(newInt.serialNumber.toLowerCase()).toBe(rotated.new.serial);

    // 3. The agent's renewal (`agent renew`: the renewal falling due; a `run --once` would find
    //    nothing due before renewAfter, ~30 min away) is refused issuer_revoked, which ends the
    //    identity; a method that re-attests joins again in the same pass (src/agent/agent.ts
    //    tickIdentity), so one pass is all it takes — a cron'd agent does not serve a revoked
    //    certificate until its next run.
    const pass = await sigil(['agent', 'renew', '--config', config, '--format', 'json']);
    expect(pass.code).toBe(0);
    const rejoined = JSON.parse(pass.stdout);
    expect(rejoined).toMatchObject({ result: 'joined', key_storage: 'tpm', exportable: false, generation: 2 });

    // 4. A new identity (new serial) issued by the NEW intermediate: by name, key id and signature.
    expect(rejoined.serial).not.toBe(joined.serial);
    const newLeafPem = readFileSync(svid, 'utf8');
    const newLeaf = new X509Certificate(newLeafPem);
    expect(newLeaf.serialNumber.toLowerCase()).toBe(rejoined.serial);
    expect(newLeaf.issuer).toBe(newInt.subject);
    expect(keyIds(newLeafPem).aki).toMatch(/^[0-9a-f]{40}$/);
    expect(keyIds(newLeafPem).aki).toBe(keyIds(newIntPem).ski);
    expect(keyIds(newIntPem).ski).not.toBe(keyIds(oldIntPem).ski);
    expect(newLeaf.checkIssued(newInt)).toBe(true);
    expect(newLeaf.verify(newInt.publicKey)).toBe(true);
    expect(newLeaf.checkIssued(oldInt)).toBe(false);

    // It was a TPM join of the same machine (same EK, same instance), not a renewal nor a token.
    const [after] = await instances();
    expect(after).toMatchObject({
      id: before!.id,
      join_method: 'tpm',
      key_storage: 'tpm',
      exportable: false,
      generation: 2,
      serial: rejoined.serial,
      locked: false,
    });
    expect(after!.facts).toMatchObject({
      ek_public_hash: before!.facts.ek_public_hash,
      attestation: { ok: true, via: 'join', profile: 'lab-gateway-v1' },
    });
    const audit = await auditRows(issuer.dataDir);
    const agentRows = audit
      .filter((r) => r.actor === 'agent')
      .map((r) => [r.action, r.outcome, r.code, r.method, r.details?.serial ?? null]);
    expect(agentRows).toEqual([
      ['join', 'ok', null, 'tpm', joined.serial],
      ['renew', 'refused', 'issuer_revoked', null, null],
      ['join', 'ok', null, 'tpm', rejoined.serial],
    ]);
    expect(audit.filter((r) => r.action === 'join').at(-1)!.details).toMatchObject({ rejoin: true, generation: 2 });

    // `sigil agent status` exits 0 and no longer flags the identity.
    const st = await sigil(['agent', 'status', '--config', config, '--format', 'json']);
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout)).toMatchObject({
      state: 'ok',
      serial: rejoined.serial,
      join_method: 'tpm',
      issuer_revoked: false,
      consecutive_failures: 0,
      last_error: null,
    });

    // 5. openssl: the new leaf chains to the root through the new intermediate (also through what
    //    the agent wrote itself), and passes a whole-chain CRL check; the old leaf chains still
    //    (its signatures are fine) but a whole-chain check refuses it: the root CRL lists its
    //    intermediate (error 23 at depth 1).
    const rootPem = caFile('root.pem');
    const rootCrl = file('root-crl.pem');
    await exec('openssl', ['crl', '-inform', 'DER', '-in', rotated.rootCrlFile, '-out', rootCrl]);
    expect(rotated.rootCrlFile).toBe(join(issuer.dataDir, 'crl', 'root.crl'));
    const newOk = await opensslVerify(['-CAfile', rootPem, '-untrusted', caFile('intermediate.pem'), svid]);
    expect(newOk.out).toContain(': OK');
    expect((await opensslVerify(['-CAfile', join(identity, 'bundle.pem'), '-untrusted', svid, svid])).ok).toBe(true);
    const newIntCrl = await servedCrl(file('new-int-crl.pem'));
    const crlChecked = ['-crl_check_all', '-CRLfile', rootCrl];
    const newChecked = await opensslVerify([
      ...crlChecked,
      '-CRLfile',
      newIntCrl,
      '-CAfile',
      rootPem,
      '-untrusted',
      caFile('intermediate.pem'),
      svid,
    ]);
    expect(newChecked.out).toContain(': OK');

    const oldChain = ['-CAfile', rootPem, '-untrusted', rotated.old.keptAs, file('old-leaf.pem')];
    expect((await opensslVerify(oldChain)).ok).toBe(true);
    const oldChecked = await opensslVerify([...crlChecked, '-CRLfile', oldIntCrl, ...oldChain]);
    expect(oldChecked.ok).toBe(false);
    expect(oldChecked.out).toMatch(/error 23 at 1 depth lookup: certificate revoked/);
  }, 60_000);

  it('a daemon that learns it from its interval attestation renews at once, is refused, and re-joins', async () => {
    // The agent is now under primary-2; that one is revoked in turn, while its renewal is ~30 min
    // away: only the interval attestation (refused issuer_revoked) can tell it before then.
    writeFileSync(config, `${readFileSync(config, 'utf8')}attest_every: 1m\n`);
    const generation = (await instances())[0]!.generation as number;
    await issuer.stop();
    await sigilJson([
      'server',
      'rotate-intermediate',
      '--data-dir',
      issuer.dataDir,
      '--root-key',
      file('offline-root.key'),
      '--revoke-old',
    ]);
    await issuer.restart();
    // Its trust check (which would bring the root CRL, and end the identity by that path) is not
    // due during the test: this one is about the attestation's refusal.
    const state = openAgentState(file('agent'));
    const t = Date.now();
    state.setSetting(
      LAST_TRUST_CHECK_SETTING,
      JSON.stringify({ at: t, sequence: 0, error: null, failures: 0, next_at: t + 3_600_000 }),
    );
    state.close();
    const since = new Date().toISOString();
    const agent = startAttestingAgent(config, 500);
    try {
      await expect
        .poll(async () => (await instances())[0]!.generation, { timeout: 30_000, interval: 300 })
        .toBe(generation + 1);
    } finally {
      await agent.stop();
    }
    const audit = await auditRows(issuer.dataDir);
    const rows = audit
      .filter((r) => r.actor === 'agent' && r.at >= since)
      .map((r) => [r.action, r.outcome, r.code ?? null]);
    // The attestation's refusal made the renewal due now; the renewal's refusal ended the identity;
    // the same pass joined with the TPM.
    expect(rows.slice(0, 3)).toEqual([
      ['attest', 'refused', 'issuer_revoked'],
      ['renew', 'refused', 'issuer_revoked'],
      ['join', 'ok', null],
    ]);
    expect(agent.log()).toMatch(
      /a request was refused: the intermediate CA of this identity was revoked; renewing now/,
    );
    expect(new X509Certificate(readFileSync(svid)).issuer).toBe(
      new X509Certificate(readFileSync(caFile('intermediate.pem'))).subject,
    );
  }, 90_000);
});
