/**
 * An interval attestation refused `pcr_selection_changed` makes the agent join again (issue #16),
 * as a renewal refused so does (test/e2e/tpm-continuous-attestation.test.ts): `sigil agent run`
 * with `attest_every` against a real swtpm and a real issuer. The join rule's firmware profile is
 * replaced by one that selects another PCR; the next interval attestation's quote covers the old
 * selection and is refused — not a verdict on the machine, so nothing is locked — and the agent
 * joins at once (same machine, same instance), learns the new selection, and its following
 * interval attestation is judged by the new profile. Without the re-join the agent would keep
 * quoting the old selection until its next renewal, hours away with real certificate lifetimes.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  auditRows,
  agentStatusJson,
  applyResources,
  RESOURCES,
  sigilJson,
  startIssuer,
  tempDir,
  type RunningIssuer,
} from '../helpers/cli.js';
import { startAttestingAgent, type AttestingAgent } from '../helpers/attesting-agent.js';
import { installLabProfiles } from '../helpers/firmware-boot.js';
import { createLocalCa, simulateBoot, startSwtpm, type SharedLocalCa, type SwtpmInstance } from '../helpers/swtpm.js';

const ATTEST_EVERY_MS = 1500;

describe('interval attestation refused pcr_selection_changed (swtpm)', () => {
  const tmp = tempDir('sigil-attest-rejoin-');
  let issuer: RunningIssuer;
  let ca: SharedLocalCa;
  let tpm: SwtpmInstance;
  const config = join(tmp.path, 'agent.yaml');
  let restoreProfiles: (() => void) | undefined;

  const rule = (profile: string): string =>
    `kind: join_rule\nname: attested\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles![0]}, ${ca.caFiles![1]}]\n    firmware_profiles: [${profile}]\n    on_attestation_failure: lock\n`;
  const instances = async (): Promise<Array<Record<string, any>>> =>
    sigilJson(['ctl', '--data-dir', issuer.dataDir, 'instances', 'ls']);
  const status = (): Promise<Record<string, any>> => agentStatusJson(['--config', config]);

  beforeAll(async () => {
    restoreProfiles = installLabProfiles(join(tmp.path, 'profiles'));
    ca = await createLocalCa();
    tpm = await startSwtpm({ localCa: ca });
    const eventLog = join(tmp.path, 'boot.log');
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    issuer = await startIssuer(tmp.path);
    await applyResources(issuer, tmp.path, `${RESOURCES}---\n${rule('lab-attested')}`);
    writeFileSync(
      config,
      `issuer: ${issuer.url}\nca_pin: ${issuer.pin}\ndata_dir: ${join(tmp.path, 'agent')}\n` +
        `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: ${eventLog} } }\nkey_storage: tpm\n` +
        `attest_every: 1m\noutputs:\n  - { type: identity, path: ${join(tmp.path, 'identity')} }\n`,
    );
  }, 120_000);
  afterAll(async () => {
    restoreProfiles?.();
    await issuer?.stop();
    await tpm?.destroy();
    ca?.destroy();
    tmp.cleanup();
  });

  const startAgent = (): AttestingAgent => startAttestingAgent(config, ATTEST_EVERY_MS);

  it('the agent joins again at once and attests under the new selection; nothing is locked', async () => {
    expect(await sigilJson(['agent', 'run', '--config', config, '--once'])).toMatchObject({ result: 'joined' });
    const [joined] = await instances();
    const agent = startAgent();
    try {
      await expect
        .poll(async () => (await status()).last_attestation_profile, { timeout: 30_000, interval: 300 })
        .toBe('lab-attested');

      // The rule now names a profile over PCR 23 only: the agent's quotes cover PCR 16 and the log's PCRs.
      await applyResources(issuer, tmp.path, rule('lab-attested-23'));
      await expect
        .poll(async () => (await status()).last_attestation_profile, { timeout: 30_000, interval: 300 })
        .toBe('lab-attested-23');
      expect(agent.log()).toMatch(/attestation refused \(pcr_selection_changed\)/);
    } finally {
      await agent.stop();
    }
    const [after] = await instances();
    // The same machine is the same instance; the rule edit was not held against it.
    expect(after!.id).toBe(joined!.id);
    expect(after!.locked).toBe(false);
    expect(after!.facts.attestation).toMatchObject({ ok: true, via: 'attest', profile: 'lab-attested-23' });
    expect(after!.generation).toBeGreaterThan(joined!.generation);
    const audit = await auditRows(issuer.dataDir);
    expect(audit.some((r) => r.action === 'attest' && r.code === 'pcr_selection_changed')).toBe(true);
    expect(audit.some((r) => r.action === 'join' && r.outcome === 'ok' && Date.parse(r.at) > 0)).toBe(true);
    expect(audit.some((r) => r.action === 'lock')).toBe(false);
  }, 120_000);
});
