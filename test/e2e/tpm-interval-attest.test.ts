/**
 * Interval attestation end to end (issue #16): `sigil agent run` with `attest_every` against a
 * real swtpm, a real issuer and a real mosquitto. The agent joins with the lab-gateway-v1
 * firmware profile and attests on its interval (SIGIL_TEST_ATTEST_EVERY_MS shortens the 1m floor
 * so the test sees several); then PCR 7 of the profile is extended behind its back, and the next
 * interval attestation is refused with the PCR diff: `sigil agent status` names the check, `sigil
 * ctl instances show` prints the diff, the audit has the refused row, and the issuer's metrics
 * count it. Over HTTPS first; then, after a reboot with a fresh boot log (the PCRs match again),
 * the same over MQTT.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  auditRows,
  agentStatusJson,
  applyResources,
  sigil,
  sigilJson,
  tempDir,
  type RunningIssuer,
} from '../helpers/cli.js';
import { startAttestingAgent, type AttestingAgent } from '../helpers/attesting-agent.js';
import { issuerMetrics, startMqttIssuerRig, type Broker, type IssuerProcess } from '../helpers/mosquitto.js';
import {
  createLocalCa,
  simulateBoot,
  startSwtpm,
  tpm2Tool,
  type SharedLocalCa,
  type SwtpmInstance,
} from '../helpers/swtpm.js';

const ATTEST_EVERY_MS = 1500;
/** An extend nothing in the profile expects: PCR 7 (secure boot policy) no longer matches. */
const TAMPER = `7:sha256=${'5a'.repeat(32)}`;

describe('interval attestation through `sigil agent run` (swtpm)', () => {
  const tmp = tempDir('sigil-attest-e2e-');
  const dataDir = join(tmp.path, 'issuer');
  const admin = { dataDir } as RunningIssuer;
  let ca: SharedLocalCa;
  let tpm: SwtpmInstance;
  let broker: Broker;
  let issuer: IssuerProcess;
  let pin: string;
  const eventLog = join(tmp.path, 'boot.log');
  const config = join(tmp.path, 'agent.yaml');

  beforeAll(async () => {
    ca = await createLocalCa();
    tpm = await startSwtpm({ localCa: ca });
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    ({ broker, pin, issuer } = await startMqttIssuerRig(tmp.path, dataDir));
    await applyResources(
      admin,
      tmp.path,
      `kind: join_rule\nname: racks\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles[0]}, ${ca.caFiles[1]}]\n    firmware_profiles: [lab-gateway-v1]\n    on_attestation_failure: refuse\n`,
    );
  }, 120_000);
  afterAll(async () => {
    await issuer?.stop();
    await broker?.stop();
    await tpm?.destroy();
    ca?.destroy();
    tmp.cleanup();
  });

  function writeConfig(transport: string): void {
    writeFileSync(
      config,
      `transports:\n  - ${transport}\nca_pin: ${pin}\ndata_dir: ${join(tmp.path, 'agent')}\n` +
        `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: ${eventLog} } }\nkey_storage: tpm\n` +
        `attest_every: 1m\noutputs:\n  - { type: identity, path: ${join(tmp.path, 'identity')} }\n`,
    );
  }

  const startAgent = (): AttestingAgent => startAttestingAgent(config, ATTEST_EVERY_MS);

  const status = (): Promise<Record<string, any>> => agentStatusJson(['--config', config]);

  /** Wait until the agent's status reports a last attestation after `since` with `result`. */
  async function attestationAfter(since: number, result: 'ok' | 'refused'): Promise<Record<string, any>> {
    let last: Record<string, any> = {};
    await expect
      .poll(
        async () => {
          last = await status();
          return last.last_attestation !== null && Date.parse(last.last_attestation) > since
            ? last.last_attestation_result
            : null;
        },
        { timeout: 30_000, interval: 500 },
      )
      .toBe(result);
    return last;
  }

  async function shownInstance(): Promise<{ json: Record<string, any>; text: string }> {
    const id = (await sigilJson(['ctl', '--data-dir', dataDir, 'instances', 'ls']))[0].id as string;
    const json = await sigilJson(['ctl', '--data-dir', dataDir, 'instances', 'show', id, '--format', 'json']);
    const text = (await sigil(['ctl', '--data-dir', dataDir, 'instances', 'show', id])).stdout;
    return { json, text };
  }

  async function tamperedThenRefused(transport: 'https' | 'mqtt'): Promise<void> {
    const agent = startAgent();
    try {
      const ok = await attestationAfter(0, 'ok');
      expect(ok).toMatchObject({ last_attestation_profile: 'lab-gateway-v1' });
      expect((await shownInstance()).json.attestation).toMatchObject({ result: 'ok', via: expect.any(String) });

      const before = Date.now();
      await tpm2Tool(tpm, 'tpm2_pcrextend', [TAMPER]);
      const refused = await attestationAfter(before, 'refused');
      expect(refused.last_attestation_check).toBe('pcr_mismatch');
      expect(agent.log()).toMatch(/attestation refused \(pcr_mismatch\)/);

      const { json, text } = await shownInstance();
      expect(json.attestation).toMatchObject({
        result: 'refused',
        via: 'attest',
        check: 'pcr_mismatch',
        pcr_diff: expect.arrayContaining([
          expect.objectContaining({
            bank: 'sha256',
            pcr: 7,
            expected: ['e57982bc341134d20d7c93139b68bc108becc4522123ac085644feca2e338a18'],
          }),
        ]),
      });
      expect(text).toMatch(/attestation: refused at .* via attest/);
      expect(text).toMatch(/check: +pcr_mismatch/);
      expect(text).toMatch(/pcr sha256:7 +expected e57982bc341134d2…, got [0-9a-f]{16}…/);

      const audit = await sigilJson(['ctl', '--data-dir', dataDir, 'audit', '--since', '10m', '--format', 'json']);
      const row = (audit as Array<Record<string, any>>).find(
        (r) =>
          r.action === 'attest' && r.outcome === 'refused' && r.code === 'pcr_mismatch' && Date.parse(r.at) >= before,
      );
      expect(row?.details?.pcr_diff).toEqual(json.attestation.pcr_diff);
      expect(await issuerMetrics(issuer.url)).toMatch(
        /sigil_attestation_failures_total\{check="pcr_mismatch",via="attest"\} [1-9]/,
      );
      // Sent over the configured transport only.
      expect(agent.log()).toContain(`"transport":"${transport}`);
    } finally {
      await agent.stop();
    }
  }

  it('over HTTPS: attests on its interval, and a PCR extended behind its back is refused with the diff', async () => {
    writeConfig(`{ type: https, url: "${issuer.url}" }`);
    expect(await sigilJson(['agent', 'run', '--config', config, '--once'])).toMatchObject({ result: 'joined' });
    await tamperedThenRefused('https');
  }, 120_000);

  it('over MQTT: after a reboot with a fresh boot log it attests again, and the same tamper is refused', async () => {
    await tpm.reboot();
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    writeConfig(`{ type: mqtt, url: "${broker.url}", timeout: 10s }`);
    await tamperedThenRefused('mqtt');
  }, 120_000);

  it('with on_attestation_failure: lock, the refused interval attestation locks the instance', async () => {
    await tpm.reboot();
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    await applyResources(
      admin,
      tmp.path,
      `kind: join_rule\nname: racks\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles[0]}, ${ca.caFiles[1]}]\n    firmware_profiles: [lab-gateway-v1]\n    on_attestation_failure: lock\n`,
    );
    writeConfig(`{ type: https, url: "${issuer.url}" }`);
    await tamperedThenRefused('https');
    const { json, text } = await shownInstance();
    expect(json).toMatchObject({ locked: true, lock_reason: expect.stringContaining('pcr_mismatch') });
    expect(text).toMatch(/locked: +true \(attestation failed \(pcr_mismatch\)/);
    const audit = await auditRows(dataDir);
    expect(audit.some((r) => r.action === 'lock' && r.outcome === 'ok' && r.actor === 'system')).toBe(true);
    // Locked: the agent's next attestations are refused before any quote is judged.
    const agent = startAgent();
    try {
      await expect
        .poll(async () => (await status()).last_attestation_error, { timeout: 30_000, interval: 500 })
        .toMatch(/^instance_locked:/);
    } finally {
      await agent.stop();
    }
  }, 120_000);
});
