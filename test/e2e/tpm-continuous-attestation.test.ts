/**
 * Continuous attestation (issue #16) end to end: the real `sigil agent` and `sigil server`
 * processes (dist/), a real swtpm with a simulated measured boot, tpm2-tools changing the PCRs
 * behind the agent's back, and openssl judging the issuer's CRL.
 *
 * The firmware profile pins the resettable debug PCR 16 (zero after TPM2_Startup and
 * tpm2_pcrreset) and reads the boot's event log (PCRs 0, 4, 7, 8), so the test breaks the boot
 * with tpm2_pcrextend and restores it with tpm2_pcrreset, and a power cycle of the swtpm is a
 * reboot whose new log the agent must send.
 *
 * Covered here: a renewal re-attests (the agent quotes with the AK it kept); an extended PCR
 * refuses the next renewal, naming the PCR diff, and lists the certificate on the CRL;
 * restoring it lets a `refuse`-mode renewal through; a reboot with the new event log passes and
 * without it (event_log: false) is refused eventlog_required; under `lock` the instance is
 * locked and openssl verify -crl_check refuses its certificate; a rule edit that changes the PCR
 * selection is refused pcr_selection_changed and the agent joins again by itself; and the
 * refusal with the diff over MQTT (mosquitto) too. A replayed quote and a quote by
 * another AK are refused in test/unit/tpm/continuous-attestation.test.ts (real swtpm, real HTTPS
 * issuer), where a test can forge the request body.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyResources,
  RESOURCES,
  sigil,
  sigilJson,
  startIssuer,
  tempDir,
  type RunningIssuer,
} from '../helpers/cli.js';
import { prepareMqttIssuer, spawnIssuer, type Broker, type IssuerProcess } from '../helpers/mosquitto.js';
import {
  createLocalCa,
  simulateBoot,
  startSwtpm,
  tpm2Tool,
  type SharedLocalCa,
  type SwtpmInstance,
} from '../helpers/swtpm.js';
import { installLabProfiles } from '../helpers/firmware-boot.js';

const exec = promisify(execFile);
const ZERO = '00'.repeat(32);

describe('continuous attestation through `sigil agent` (swtpm)', () => {
  const tmp = tempDir();
  let issuer: RunningIssuer;
  let ca: SharedLocalCa;
  let tpm: SwtpmInstance;
  let eventLog: string;
  let config: string;
  let restoreProfiles: (() => void) | undefined;

  const rule = (policy: 'refuse' | 'lock'): string =>
    `kind: join_rule\nname: attested\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles![0]}, ${ca.caFiles![1]}]\n    firmware_profiles: [lab-attested]\n    on_attestation_failure: ${policy}\n`;
  const writeConfig = (log: string | false): void =>
    writeFileSync(
      config,
      `issuer: ${issuer.url}\nca_pin: ${issuer.pin}\ndata_dir: ${join(tmp.path, 'agent')}\n` +
        `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: ${log === false ? 'false' : log} } }\nkey_storage: tpm\n` +
        `outputs:\n  - { type: identity, path: ${join(tmp.path, 'identity')} }\n`,
    );
  const instance = async (): Promise<any> =>
    (await sigilJson(['ctl', '--data-dir', issuer.dataDir, 'instances', 'ls']))[0];
  const renew = () => sigil(['agent', 'renew', '--config', config]);
  const extend16 = (): Promise<unknown> => tpm2Tool(tpm, 'tpm2_pcrextend', [`16:sha256=${'ab'.repeat(32)}`]);
  const reset16 = (): Promise<unknown> => tpm2Tool(tpm, 'tpm2_pcrreset', ['16']);
  /** The served CRL (GET /v1/crl through `sigil ctl ca crl --server`) and openssl's verdict on the current SVID. */
  const opensslVerify = async (): Promise<{ ok: boolean; out: string }> => {
    const crl = join(tmp.path, 'crl.pem');
    await sigilJson(['ctl', '--server', issuer.url, '--ca-pin', issuer.pin, 'ca', 'crl', '--out', crl]);
    const id = join(tmp.path, 'identity');
    const args = ['verify', '-crl_check', '-CRLfile', crl, '-CAfile', join(id, 'bundle.pem')];
    args.push('-untrusted', join(id, 'svid.pem'), join(id, 'svid.pem'));
    return exec('openssl', args).then(
      (r) => ({ ok: true, out: r.stdout + r.stderr }),
      (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
  };

  beforeAll(async () => {
    restoreProfiles = installLabProfiles(join(tmp.path, 'profiles'));
    ca = await createLocalCa();
    tpm = await startSwtpm({ localCa: ca });
    eventLog = join(tmp.path, 'boot.log');
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    issuer = await startIssuer(tmp.path);
    await applyResources(issuer, tmp.path, `${RESOURCES}---\n${rule('refuse')}`);
    config = join(tmp.path, 'agent.yaml');
    writeConfig(eventLog);
  }, 120_000);
  afterAll(async () => {
    restoreProfiles?.();
    await issuer?.stop();
    await tpm?.destroy();
    ca?.destroy();
    tmp.cleanup();
  });

  it('joins with the profile; a renewal carries a fresh quote the issuer re-judges', async () => {
    expect(await sigilJson(['agent', 'run', '--config', config, '--once'])).toMatchObject({ result: 'joined' });
    expect((await instance()).facts).toMatchObject({ attestation: { ok: true, via: 'join', profile: 'lab-attested' } });
    expect(await sigilJson(['agent', 'renew', '--config', config])).toMatchObject({ result: 'renewed', generation: 2 });
    expect((await instance()).facts).toMatchObject({
      attestation: { ok: true, via: 'renew', profile: 'lab-attested', rebooted: false },
    });
    expect((await opensslVerify()).ok).toBe(true);
  }, 120_000);

  it('an extended PCR refuses the renewal with the PCR diff and revokes; tpm2_pcrreset lets it renew again (refuse)', async () => {
    await extend16();
    try {
      const r = await renew();
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/pcr_mismatch/);
      expect(r.stderr).toMatch(new RegExp(`PCR diff: sha256:16 expected ${ZERO} got [0-9a-f]{64}`));
      const inst = await instance();
      expect(inst.locked).toBe(false);
      expect(inst.facts.attestation).toMatchObject({
        ok: false,
        check: 'pcr_mismatch',
        diff: [{ bank: 'sha256', pcr: 16, expected: [ZERO] }],
      });
      const v = await opensslVerify();
      expect(v.ok).toBe(false);
      expect(v.out).toMatch(/certificate revoked/);
    } finally {
      await reset16();
    }
    expect(await sigilJson(['agent', 'renew', '--config', config])).toMatchObject({ result: 'renewed' });
    expect((await instance()).facts.attestation).toMatchObject({ ok: true });
    expect((await opensslVerify()).ok).toBe(true);
  }, 120_000);

  it('a reboot without the new event log is refused (eventlog_required); with it the renewal passes', async () => {
    await tpm.reboot();
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    writeConfig(false);
    const hidden = await renew();
    expect(hidden.code).toBe(1);
    expect(hidden.stderr).toMatch(/eventlog_required/);
    expect((await instance()).facts.attestation).toMatchObject({
      ok: false,
      check: 'eventlog_required',
      rebooted: true,
    });
    writeConfig(eventLog);
    expect(await sigilJson(['agent', 'renew', '--config', config])).toMatchObject({ result: 'renewed' });
    expect((await instance()).facts.attestation).toMatchObject({ ok: true, rebooted: true });
  }, 120_000);

  it('under on_attestation_failure: lock the instance is locked and openssl refuses its certificate', async () => {
    await applyResources(issuer, tmp.path, rule('lock'));
    await extend16();
    try {
      const r = await renew();
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/pcr_mismatch.*is locked/);
      const inst = await instance();
      expect(inst.locked).toBe(true);
      expect(inst.lock_reason).toMatch(/attestation failed \(pcr_mismatch\)/);
      const v = await opensslVerify();
      expect(v.ok).toBe(false);
      expect(v.out).toMatch(/certificate revoked/);
    } finally {
      await reset16();
    }
    // Restored, but locked: a person decides.
    expect((await renew()).stderr).toMatch(/instance_locked/);
    await sigilJson(['ctl', '--data-dir', issuer.dataDir, 'unlock', (await instance()).id]);
    expect(await sigilJson(['agent', 'renew', '--config', config])).toMatchObject({ result: 'renewed' });
    expect((await opensslVerify()).ok).toBe(true);
  }, 120_000);
  it('a rule whose profiles now select other PCRs: the renewal is refused pcr_selection_changed, the agent joins again', async () => {
    await applyResources(
      issuer,
      tmp.path,
      rule('refuse').replace('firmware_profiles: [lab-attested]', 'firmware_profiles: [lab-attested-23]'),
    );
    const refused = await renew();
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/pcr_selection_changed/);
    // The next attempt is a join (same machine, same instance), which learns the new selection.
    expect(await sigilJson(['agent', 'renew', '--config', config])).toMatchObject({ result: 'joined' });
    expect(await sigilJson(['agent', 'renew', '--config', config])).toMatchObject({ result: 'renewed' });
    expect((await instance()).facts.attestation).toMatchObject({ ok: true, via: 'renew', profile: 'lab-attested-23' });
  }, 120_000);
});

describe('continuous attestation over MQTT (mosquitto)', () => {
  const tmp = tempDir('sigil-attest-mqtt-');
  let broker: Broker;
  let issuer: IssuerProcess;
  let ca: SharedLocalCa;
  let tpm: SwtpmInstance;
  let config: string;
  let restoreProfiles: (() => void) | undefined;
  const dataDir = join(tmp.path, 'issuer');

  beforeAll(async () => {
    restoreProfiles = installLabProfiles(join(tmp.path, 'profiles'), ['lab-attested']);
    ca = await createLocalCa();
    tpm = await startSwtpm({ localCa: ca });
    const eventLog = join(tmp.path, 'boot.log');
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    const rig = await prepareMqttIssuer(tmp.path, dataDir);
    broker = rig.broker;
    await applyResources(
      { dataDir } as RunningIssuer,
      tmp.path,
      `kind: join_rule\nname: attested\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles![0]}, ${ca.caFiles![1]}]\n    firmware_profiles: [lab-attested]\n`,
    );
    issuer = await spawnIssuer(dataDir, ['--mqtt-url', broker.url]);
    config = join(tmp.path, 'agent.yaml');
    writeFileSync(
      config,
      `ca_pin: ${rig.pin}\ndata_dir: ${join(tmp.path, 'agent')}\n` +
        `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: ${eventLog} } }\nkey_storage: tpm\n` +
        `transports:\n  - { type: mqtt, url: "${broker.url}", timeout: 5s }\n`,
    );
  }, 120_000);
  afterAll(async () => {
    restoreProfiles?.();
    await issuer?.stop();
    await broker?.stop();
    await tpm?.destroy();
    ca?.destroy();
    tmp.cleanup();
  });

  it('renews with a fresh quote over MQTT; an extended PCR is refused with the diff; restored, it renews', async () => {
    expect(await sigilJson(['agent', 'run', '--config', config, '--once'])).toMatchObject({ result: 'joined' });
    expect(await sigilJson(['agent', 'renew', '--config', config])).toMatchObject({ result: 'renewed', generation: 2 });
    await tpm2Tool(tpm, 'tpm2_pcrextend', [`16:sha256=${'cd'.repeat(32)}`]);
    try {
      const r = await sigil(['agent', 'renew', '--config', config]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/pcr_mismatch/);
      expect(r.stderr).toMatch(new RegExp(`PCR diff: sha256:16 expected ${ZERO} got [0-9a-f]{64}`));
    } finally {
      await tpm2Tool(tpm, 'tpm2_pcrreset', ['16']);
    }
    expect(await sigilJson(['agent', 'renew', '--config', config])).toMatchObject({ result: 'renewed', generation: 3 });
    const inst = (await sigilJson(['ctl', '--data-dir', dataDir, 'instances', 'ls']))[0];
    expect(inst.facts.attestation).toMatchObject({ ok: true, via: 'renew' });
  }, 120_000);
});
