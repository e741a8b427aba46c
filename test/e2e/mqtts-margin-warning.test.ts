/**
 * The mqtts renewal-margin warning (agent/transport-cert.ts mqttsRenewalMarginWarning), end to end:
 * real mosquitto configured like scripts/mosquitto/*.example (require_certificate, the example ACL
 * that keeps the bootstrap user away from renewals), a real `sigil server start --mqtt-url`, and
 * `sigil agent run --once`. An agent whose certificates are so short-lived that a renewal can fall
 * in the transport certificate's last 30 s (when it would connect with the bootstrap login, which
 * that ACL refuses) says so once, with the TTL that avoids it; one with a sound TTL says nothing.
 * Found by walking the docs with `ttl: 30s` (session 8); unit-tested only until session 10.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentStatusJson, applyResources, createToken, sigil, tempDir, type RunningIssuer } from '../helpers/cli.js';
import { type Broker, type IssuerProcess, startExampleBroker, writeTransportAgent } from '../helpers/mosquitto.js';
import { sigilJson } from '../helpers/cli.js';

describe('mqtts renewal-margin warning', () => {
  const tmp = tempDir('sigil-mqtts-margin-');
  const dataDir = join(tmp.path, 'issuer');
  const admin = { dataDir } as RunningIssuer;
  const pwFile = join(tmp.path, 'bootstrap.pw');
  let broker: Broker;
  let issuer: IssuerProcess;
  let pin: string;

  beforeAll(async () => {
    pin = (
      await sigilJson<{ ca_pin: string }>(['server', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org'])
    ).ca_pin;
    await applyResources(admin, tmp.path);
    ({ broker, issuer } = await startExampleBroker(tmp.path, dataDir, pwFile));
  }, 120_000);
  afterAll(async () => {
    await issuer?.stop();
    await broker?.stop();
    tmp.cleanup();
  });

  const mqtts = (): string =>
    `{ type: mqtt, url: "${broker.url}", timeout: 10s, bootstrap: { url: "${broker.bootstrapUrl}", username: bootstrap, password_file: ${pwFile} } }`;

  /** The agent's log lines (JSON) at level warn that carry the margin warning. */
  const marginWarnings = (stderr: string): Array<{ msg: string; not_after?: string }> =>
    stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level?: number | string; msg: string; not_after?: string })
      .filter((l) => /use the bootstrap login/.test(l.msg));

  it('ttl 30s over mqtts: joins, and warns once with the TTL that avoids it', async () => {
    const a = writeTransportAgent(tmp.path, 'short', {
      pin,
      token: await createToken(admin),
      transports: [mqtts()],
      extra: 'ttl: 30s\n',
    });
    const r = await sigil(['agent', 'run', '--once', '--config', a.config], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const w = marginWarnings(r.stderr);
    expect(w).toHaveLength(1);
    expect(w[0]!.msg).toMatch(/certificates of 30 s renewed at 0\.\d+ of their lifetime/);
    expect(w[0]!.msg).toMatch(/ttl of at least \d+ s, or a lower renew_fraction/);
    expect(w[0]!.not_after).toMatch(/^\d{4}-\d\d-\d\dT/);
  }, 90_000);

  it('ttl 1h over mqtts: no warning', async () => {
    const a = writeTransportAgent(tmp.path, 'long', {
      pin,
      token: await createToken(admin),
      transports: [mqtts()],
      extra: 'ttl: 1h\n',
    });
    const r = await sigil(['agent', 'run', '--once', '--config', a.config], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(marginWarnings(r.stderr)).toEqual([]);
    // It did join over mqtts (the same path as the warned agent's), it just had nothing to warn about.
    const st = await agentStatusJson(['--config', a.config]);
    expect(st).toMatchObject({ generation: 1, transport: expect.stringMatching(/^mqtt mqtts:\/\//) });
  }, 90_000);
});
