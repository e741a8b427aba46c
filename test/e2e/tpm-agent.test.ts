/**
 * The tpm join through the real agent process against a real swtpm: EK certificate from a
 * test-local manufacturer CA, a simulated measured boot checked against the lab-gateway-v1
 * firmware profile, the identity key created in the TPM (non-exportable, written as a
 * TSS2 PRIVATE KEY), renewal with a TPM2_Certify proof of the new key.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { createServer, connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentStatusJson,
  applyResources,
  RESOURCES,
  sigil,
  sigilJson,
  startIssuer,
  tempDir,
  type RunningIssuer,
} from '../helpers/cli.js';
import { createLocalCa, startSwtpm, simulateBoot, type SharedLocalCa, type SwtpmInstance } from '../helpers/swtpm.js';

describe('tpm join through `sigil agent run` (swtpm)', () => {
  const tmp = tempDir();
  let issuer: RunningIssuer;
  let ca: SharedLocalCa;
  let tpm: SwtpmInstance;
  let eventLog: string;

  beforeAll(async () => {
    ca = await createLocalCa();
    tpm = await startSwtpm({ localCa: ca });
    eventLog = join(tmp.path, 'boot.log');
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    issuer = await startIssuer(tmp.path);
    await applyResources(
      issuer,
      tmp.path,
      `${RESOURCES}---\nkind: join_rule\nname: racks\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles[0]}, ${ca.caFiles[1]}]\n    firmware_profiles: [lab-gateway-v1]\n`,
    );
  }, 120_000);
  afterAll(async () => {
    await issuer?.stop();
    await tpm?.destroy();
    ca?.destroy();
    tmp.cleanup();
  });

  it('joins with a TPM-resident key, renews with a certified new key, and openssl verifies the SVID', async () => {
    const config = join(tmp.path, 'agent.yaml');
    const out = join(tmp.path, 'identity');
    writeFileSync(
      config,
      `issuer: ${issuer.url}\nca_pin: ${issuer.pin}\ndata_dir: ${join(tmp.path, 'agent')}\n` +
        `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: ${eventLog} } }\nkey_storage: tpm\n` +
        `outputs:\n  - { type: identity, path: ${out} }\n`,
    );
    const joined = await sigilJson(['agent', 'run', '--config', config, '--once']);
    expect(joined).toMatchObject({ result: 'joined', key_storage: 'tpm', exportable: false, generation: 1 });
    expect(existsSync(join(out, 'svid.tss2.pem'))).toBe(true);
    expect(readFileSync(join(out, 'svid.tss2.pem'), 'utf8')).toContain('BEGIN TSS2 PRIVATE KEY');
    const svid = join(out, 'svid.pem');
    expect(
      execFileSync('openssl', ['verify', '-CAfile', join(out, 'bundle.pem'), '-untrusted', svid, svid], {
        encoding: 'utf8',
      }),
    ).toContain(': OK');

    const inst = (await sigilJson(['ctl', '--data-dir', issuer.dataDir, 'instances', 'ls']))[0];
    expect(inst).toMatchObject({ join_method: 'tpm', key_storage: 'tpm', exportable: false });
    expect(JSON.stringify(inst.facts)).toMatch(/sha256:[0-9a-f]{64}/);
    expect(JSON.stringify(inst.facts)).toContain('lab-gateway-v1');

    const renewed = await sigilJson(['agent', 'renew', '--config', config]);
    expect(renewed).toMatchObject({ result: 'renewed', key_storage: 'tpm', exportable: false, generation: 2 });
    // The issuer recorded the renewed key as TPM-resident: the renewal carried TPM2_Certify by the
    // AK the agent kept from its join (the tpm method's onJoined / renewalKeyProof hooks).
    expect((await sigilJson(['ctl', '--data-dir', issuer.dataDir, 'instances', 'ls']))[0]).toMatchObject({
      key_storage: 'tpm',
      exportable: false,
      generation: 2,
    });
    const st = await agentStatusJson(['--config', config]);
    expect(st).toMatchObject({ key_storage: 'tpm', exportable: false, instance_id: inst.id, tpm_tcti: tpm.tcti });

    // The TPM is now reached another way (issue #12: the key was made through tabrmd, the
    // config now says the device): the configured TCTI is used, not the one the key was made
    // through. The stored key reference is pointed at a TCTI that no longer works, and a
    // counting TCP relay in front of swtpm stands in for the new path.
    const db = new Database(join(tmp.path, 'agent', 'agent.db'));
    db.prepare("UPDATE identity SET key_ref = json_set(key_ref, '$.tcti', 'swtpm:host=127.0.0.1,port=9')").run();
    db.close();
    let relayed = 0;
    const relay = createServer((c) => {
      relayed++;
      const up = connect(tpm.port, '127.0.0.1');
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
    try {
      const newTcti = `swtpm:host=127.0.0.1,port=${(relay.address() as AddressInfo).port}`;
      writeFileSync(config, readFileSync(config, 'utf8').replace(tpm.tcti, newTcti));
      const again = await sigilJson(['agent', 'renew', '--config', config]);
      expect(again).toMatchObject({ result: 'renewed', key_storage: 'tpm', generation: 3 });
      expect(relayed).toBeGreaterThan(0);
      expect(await agentStatusJson(['--config', config])).toMatchObject({ tpm_tcti: newTcti });
    } finally {
      relay.close();
    }
  }, 120_000);

  it('a boot that does not match the firmware profile is refused, naming the PCR', async () => {
    await tpm.reboot();
    await simulateBoot(tpm, { secureBoot: false });
    const config = join(tmp.path, 'agent2.yaml');
    writeFileSync(
      config,
      `issuer: ${issuer.url}\nca_pin: ${issuer.pin}\ndata_dir: ${join(tmp.path, 'agent2')}\n` +
        `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: false } }\nkey_storage: tpm\n`,
    );
    const r = await sigil(['agent', 'run', '--config', config, '--once']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[(pcr_mismatch|firmware_profile_mismatch)\].*PCR ?7/i);
  }, 120_000);
});
