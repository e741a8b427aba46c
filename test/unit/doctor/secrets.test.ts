import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../../src/agent/config.js';
import type { AgentDoctorContext } from '../../../src/doctor/agent/context.js';
import { secretsCheck } from '../../../src/doctor/agent/secrets.js';
import type { CheckOutcome } from '../../../src/doctor/types.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-doctor-secrets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PIN = `sha256:${'ab'.repeat(32)}`;
const NOW = Date.parse('2026-12-05T10:00:00Z');

/** A config file in `dir` plus the doctor context over it; `joinedUntil` fakes the agent's identity. */
function setup(name: string, yaml: string, joinedUntil?: number): AgentDoctorContext {
  const configPath = join(dir, `${name}.yaml`);
  writeFileSync(configPath, yaml, { mode: 0o600 });
  chmodSync(configPath, 0o600);
  const cfg = loadAgentConfig(configPath);
  const state = joinedUntil === undefined ? undefined : { getIdentity: () => ({ notAfter: joinedUntil }) };
  return {
    configPath,
    cfg,
    now: () => NOW,
    state: async () => state as never,
    probe: () => Promise.reject(new Error('no network in this test')),
    onClose: () => undefined,
    close: async () => undefined,
  };
}

const run = (ctx: AgentDoctorContext): Promise<CheckOutcome> =>
  Promise.resolve(secretsCheck.run(ctx, new AbortController().signal));

function tokenAgent(name: string, tokenMode: number, joinedUntil?: number): AgentDoctorContext {
  const token = join(dir, `${name}.token`);
  writeFileSync(token, `${'t'.repeat(43)}\n`);
  chmodSync(token, tokenMode);
  return setup(
    name,
    `issuer: https://127.0.0.1:8443\nca_pin: ${PIN}\ndata_dir: ${join(dir, name)}\njoin: { method: token, token_file: ${name}.token }\n`,
    joinedUntil,
  );
}

describe('doctor: secret files named by agent.yaml', () => {
  it('an unused join token readable by every local user fails and names the chmod', async () => {
    const r = await run(tokenAgent('open', 0o644));
    expect(r.status).toBe('fail');
    expect(r.detail).toContain(
      `join token file ${join(dir, 'open.token')} is readable by every local user (mode 0644)`,
    );
    expect(r.fix).toContain(`chmod o-r ${join(dir, 'open.token')}`);
  });

  it('0600 and 0640 (the package layout: the agent’s group reads) are ok', async () => {
    expect((await run(tokenAgent('closed', 0o600))).status).toBe('ok');
    expect((await run(tokenAgent('group', 0o640))).status).toBe('ok');
  });

  it('a spent token (identity still valid) only warns; once the identity expired the next join spends it: fail', async () => {
    expect((await run(tokenAgent('spent', 0o644, NOW + 60_000))).status).toBe('warn');
    expect((await run(tokenAgent('expired', 0o644, NOW - 1))).status).toBe('fail');
  });

  it('a world-writable token file fails even once spent: its writer picks the bot the machine joins as', async () => {
    const r = await run(tokenAgent('writable', 0o666, NOW + 60_000));
    expect(r.status).toBe('fail');
    expect(r.detail).toContain('writable by every local user');
  });

  it('an inline join.token makes agent.yaml itself the secret', async () => {
    const ctx = setup(
      'inline',
      `issuer: https://127.0.0.1:8443\nca_pin: ${PIN}\ndata_dir: ${join(dir, 'inline')}\njoin: { method: token, token: ${'i'.repeat(43)} }\n`,
    );
    expect((await run(ctx)).status).toBe('ok');
    chmodSync(ctx.configPath, 0o644);
    const r = await run(ctx);
    expect(r.status).toBe('fail');
    expect(r.detail).toContain(`agent.yaml holding join.token ${ctx.configPath}`);
  });

  it('the MQTT bootstrap password (every device has it) warns; the PKCS#11 PIN fails', async () => {
    const pw = join(dir, 'bootstrap.pw');
    writeFileSync(pw, 'pw\n');
    chmodSync(pw, 0o644);
    const tok = join(dir, 'mq.token');
    writeFileSync(tok, `${'m'.repeat(43)}\n`, { mode: 0o600 });
    const mqtt = setup(
      'mq',
      `ca_pin: ${PIN}\ndata_dir: ${join(dir, 'mq')}\njoin: { method: token, token_file: ${tok} }\n` +
        `transports:\n  - type: mqtt\n    url: mqtts://127.0.0.1:8883\n    bootstrap: { url: "mqtts://127.0.0.1:8884", username: bootstrap, password_file: ${pw} }\n`,
    );
    const r = await run(mqtt);
    expect(r).toMatchObject({ status: 'warn' });
    expect(r.detail).toContain(`MQTT bootstrap password ${pw}`);

    const pin = join(dir, 'p11.pin');
    writeFileSync(pin, '1234\n');
    chmodSync(pin, 0o644);
    const p11 = setup(
      'p11',
      `issuer: https://127.0.0.1:8443\nca_pin: ${PIN}\ndata_dir: ${join(dir, 'p11')}\njoin: { method: token, token_file: ${tok} }\n` +
        `key_storage: pkcs11\npkcs11: { module: /usr/lib/softhsm/libsofthsm2.so, token: sigil, pin_file: ${pin} }\n`,
    );
    const q = await run(p11);
    expect(q.status).toBe('fail');
    expect(q.detail).toContain(`PKCS#11 PIN file ${pin}`);
  });
});
