/**
 * Clock skew: the issuer accepts request timestamps within ±5 min of its clock. An agent whose
 * clock is 4 min off still renews; 10 min off gets stale_request, whose message says the clock
 * is wrong. The agent's clock is shifted with the test-only SIGIL_TEST_CLOCK_OFFSET_MS
 * (agent/test-hooks.ts), over HTTPS and over MQTT (where the refusal arrives signed).
 */
import { describe, expect, it } from 'vitest';
import { createToken, sigil, sigilJson } from '../helpers/cli.js';
import { writeTransportAgent } from '../helpers/mosquitto.js';
import { useMqttIssuerRig } from '../helpers/mqtt-rig.js';

const MIN = 60_000;

describe('clock skew between agent and issuer', () => {
  const rig = useMqttIssuerRig('sigil-skew-');
  const { tmp, admin } = rig;

  const transports = (): Record<string, string> => ({
    https: `{ type: https, url: "${rig.issuer!.url}" }`,
    mqtt: `{ type: mqtt, url: "${rig.broker.url}", timeout: 10s }`,
  });

  for (const kind of ['https', 'mqtt'] as const) {
    it(`${kind}: ±4 min still renews`, async () => {
      const a = writeTransportAgent(tmp.path, `ok-${kind}`, {
        pin: rig.pin,
        token: await createToken(admin),
        transports: [transports()[kind]!],
      });
      await sigilJson(['agent', 'run', '--config', a.config, '--once']);
      for (const offset of [4 * MIN, -4 * MIN]) {
        const r = await sigil(['agent', 'renew', '--config', a.config, '--format', 'json'], {
          env: { SIGIL_TEST_CLOCK_OFFSET_MS: String(offset) },
        });
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout).result).toBe('renewed');
      }
    });

    it(`${kind}: +10 min → stale_request saying the clock is wrong; nothing locked, a correct clock renews`, async () => {
      const a = writeTransportAgent(tmp.path, `skew-${kind}`, {
        pin: rig.pin,
        token: await createToken(admin),
        transports: [transports()[kind]!],
      });
      const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
      const r = await sigil(['agent', 'renew', '--config', a.config], {
        env: { SIGIL_TEST_CLOCK_OFFSET_MS: String(10 * MIN) },
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /^error\[stale_request\]: request timestamp differs from the issuer's clock by (59|60)\d s .*check the agent's clock \(NTP\)/m,
      );
      expect(await sigilJson(['agent', 'renew', '--config', a.config])).toMatchObject({
        result: 'renewed',
        generation: joined.generation + 1,
      });
    });
  }

  it('https: −10 min → stale_request saying the clock is wrong', async () => {
    const a = writeTransportAgent(tmp.path, 'behind', {
      pin: rig.pin,
      token: await createToken(admin),
      transports: [transports().https!],
    });
    await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    const r = await sigil(['agent', 'renew', '--config', a.config], {
      env: { SIGIL_TEST_CLOCK_OFFSET_MS: String(-10 * MIN) },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error\[stale_request\]: request timestamp differs from the issuer's clock by -60\d s .*check the agent's clock/m,
    );
  });

  it('mqtt: −10 min behind a freshly started issuer → the signed answer is not yet valid here, and the error says to check the clock', async () => {
    // The issuer's signing certificate is 5 min back-dated at its start; an agent 10 min behind
    // cannot verify anything it signs until that certificate is old enough.
    const a = writeTransportAgent(tmp.path, 'behind-mqtt', {
      pin: rig.pin,
      token: await createToken(admin),
      transports: [transports().mqtt!],
    });
    await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    const r = await sigil(['agent', 'renew', '--config', a.config], {
      env: { SIGIL_TEST_CLOCK_OFFSET_MS: String(-10 * MIN) },
    });
    expect(r.code).toBe(75);
    expect(r.stderr).toMatch(/error\[(stale_request|response_invalid)\].*clock/);
  });
});
