/**
 * Join and renewal through a real mosquitto (plain MQTT, anonymous listener): the agent speaks
 * only MQTT and the issuer answers through its responder; transport failover to HTTPS when the
 * preferred broker is down; status and metrics name the transport.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentStatusJson, createToken, sigil, sigilJson, tempDir, type RunningIssuer } from '../helpers/cli.js';
import {
  freePort,
  issuerMetrics,
  writeTransportAgent,
  type Broker,
  type IssuerProcess,
  startMqttIssuerRig,
} from '../helpers/mosquitto.js';

describe('renewal over plain MQTT through mosquitto', () => {
  const tmp = tempDir('sigil-mqtt-plain-');
  let broker: Broker;
  let issuer: IssuerProcess;
  let pin: string;
  const dataDir = join(tmp.path, 'issuer');
  // cli.ts helpers only need the data dir.
  const admin = { dataDir } as RunningIssuer;

  beforeAll(async () => {
    ({ broker, pin, issuer } = await startMqttIssuerRig(tmp.path, dataDir));
  });
  afterAll(async () => {
    await issuer?.stop();
    await broker?.stop();
    tmp.cleanup();
  });

  it('joins and renews over MQTT only; status and issuer metrics name the transport', async () => {
    const prom = join(tmp.path, 'm1.prom');
    const a = writeTransportAgent(tmp.path, 'm1', {
      pin,
      token: await createToken(admin),
      transports: [`{ type: mqtt, url: "${broker.url}", timeout: 10s }`],
      extra: `metrics: { textfile: ${prom} }\n`,
    });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(joined).toMatchObject({ result: 'joined', generation: 1 });
    expect(readFileSync(join(a.outDir, 'svid.pem'), 'utf8')).toContain('BEGIN CERTIFICATE');
    const renewed = await sigilJson(['agent', 'renew', '--config', a.config]);
    expect(renewed).toMatchObject({ result: 'renewed', generation: 2 });
    const st = await agentStatusJson(['--config', a.config]);
    expect(st).toMatchObject({ transport: `mqtt ${broker.url}`, consecutive_failures: 0, serial: renewed.serial });
    expect(readFileSync(prom, 'utf8')).toContain(
      `sigil_agent_transport_successes_total{transport="mqtt",url="${broker.url}"} 1`,
    );
    expect(readFileSync(prom, 'utf8')).toContain(
      `sigil_agent_transport_last_used{transport="mqtt",url="${broker.url}"} 1`,
    );
    const m = await issuerMetrics(issuer.url);
    expect(m).toMatch(/sigil_requests_total\{transport="mqtt",op="join",outcome="ok"\} [1-9]/);
    expect(m).toMatch(/sigil_requests_total\{transport="mqtt",op="renew",outcome="ok"\} [1-9]/);
  });

  it('fails over to HTTPS when the preferred broker is unreachable; one dead transport alone is a retryable failure', async () => {
    const dead = `mqtt://127.0.0.1:${await freePort()}`;
    const a = writeTransportAgent(tmp.path, 'fo', {
      pin,
      token: await createToken(admin),
      transports: [`{ type: mqtt, url: "${dead}", timeout: 3s }`, `{ type: https, url: "${issuer.url}" }`],
    });
    expect(await sigilJson(['agent', 'run', '--config', a.config, '--once'])).toMatchObject({ result: 'joined' });
    expect(await agentStatusJson(['--config', a.config])).toMatchObject({
      transport: `https ${issuer.url}`,
      consecutive_failures: 0,
    });
    expect(await issuerMetrics(issuer.url)).toMatch(
      /sigil_requests_total\{transport="https",op="join",outcome="ok"\} [1-9]/,
    );

    const b = writeTransportAgent(tmp.path, 'down', {
      pin,
      token: await createToken(admin),
      transports: [`{ type: mqtt, url: "${dead}", timeout: 2s }`],
    });
    const r = await sigil(['agent', 'run', '--config', b.config, '--once']);
    expect(r.code).toBe(75);
    expect(r.stderr).toMatch(/^error\[issuer_unreachable\]: .*127\.0\.0\.1/m);
    const st = await agentStatusJson(['--config', b.config]);
    expect(st).toMatchObject({ state: 'not_joined', transport: `mqtt ${dead}`, consecutive_failures: 1 });
    expect(Date.parse(st.next_attempt)).toBeGreaterThan(Date.now() - 5_000);
  });
});
