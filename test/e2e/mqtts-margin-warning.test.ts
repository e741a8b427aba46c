/**
 * The mqtts renewal-margin warning (agent/transport-cert.ts mqttsRenewalMarginWarning), end to end:
 * real mosquitto configured like scripts/mosquitto/*.example (require_certificate, the example ACL
 * that keeps the bootstrap user away from renewals), a real `sigil server start --mqtt-url`, and
 * `sigil agent run --once`. An agent whose certificates are so short-lived that a renewal can fall
 * in the transport certificate's last 30 s (when it would connect with the bootstrap login, which
 * that ACL refuses) says so once, with the TTL that avoids it; one with a sound TTL says nothing.
 * Found by walking the docs with `ttl: 30s` (session 8); unit-tested only until session 10.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentStatusJson, createToken, sigil } from '../helpers/cli.js';
import { exampleMqttsRig, writeTransportAgent } from '../helpers/mosquitto.js';

describe('mqtts renewal-margin warning', () => {
  const rig = exampleMqttsRig('sigil-mqtts-margin-');
  beforeAll(() => rig.start(), 120_000);
  afterAll(() => rig.stop());

  /** The agent's JSON log lines that carry the margin warning. */
  const marginWarnings = (stderr: string): Array<{ msg: string; not_after?: string }> =>
    stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; not_after?: string })
      .filter((l) => /use the bootstrap login/.test(l.msg));

  /** An agent over mqtts only, with `ttl`, run once: its exit code and stderr. */
  async function runOnce(name: string, ttl: string): Promise<{ config: string; code: number; stderr: string }> {
    const a = writeTransportAgent(rig.dir, name, {
      pin: rig.pin,
      token: await createToken(rig.admin),
      transports: [rig.mqtts()],
      extra: `ttl: ${ttl}\n`,
    });
    const r = await sigil(['agent', 'run', '--once', '--config', a.config], { timeoutMs: 60_000 });
    return { config: a.config, code: r.code, stderr: r.stderr };
  }

  it('ttl 30s over mqtts: joins, and warns once with the TTL that avoids it', async () => {
    const r = await runOnce('short', '30s');
    expect(r.code, r.stderr).toBe(0);
    const w = marginWarnings(r.stderr);
    expect(w).toHaveLength(1);
    expect(w[0]!.msg).toMatch(/certificates of 30 s renewed at 0\.\d+ of their lifetime/);
    expect(w[0]!.msg).toMatch(/ttl of at least \d+ s, or a lower renew_fraction/);
    expect(w[0]!.not_after).toMatch(/^\d{4}-\d\d-\d\dT/);
  }, 90_000);

  it('ttl 1h over mqtts: no warning', async () => {
    const r = await runOnce('long', '1h');
    expect(r.code, r.stderr).toBe(0);
    expect(marginWarnings(r.stderr)).toEqual([]);
    // It did join over mqtts (the same path as the warned agent's), it just had nothing to warn about.
    const st = await agentStatusJson(['--config', r.config]);
    expect(st).toMatchObject({ generation: 1, transport: expect.stringMatching(/^mqtt mqtts:\/\//) });
  }, 90_000);
});
