/**
 * agent.yaml's MQTT pacing settings (issue #14): `connect_timeout` and `reconnect` (a spread, or
 * the fleet it is for), their bounds, and coded refusals that say which bound.
 */
import { describe, expect, it } from 'vitest';
import { parseAgentConfig, type TransportConfig } from '../../../src/agent/config.js';
import { SigilError } from '../../../src/errors.js';

const config = (mqtt: string): string =>
  [
    `ca_pin: sha256:${'ab'.repeat(32)}`,
    'data_dir: /var/lib/sigil',
    `join: { method: token, token: ${'T'.repeat(43)} }`,
    'transports:',
    `  - { type: mqtt, url: "mqtt://broker.example.org:1883"${mqtt ? `, ${mqtt}` : ''} }`,
  ].join('\n');

const mqttOf = (mqtt: string): Extract<TransportConfig, { type: 'mqtt' }> =>
  parseAgentConfig(config(mqtt), '/etc/sigil/agent.yaml').transports[0] as Extract<TransportConfig, { type: 'mqtt' }>;

function refusal(mqtt: string): SigilError {
  let caught: unknown;
  try {
    mqttOf(mqtt);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(SigilError);
  return caught as SigilError;
}

describe('mqtt transport pacing settings', () => {
  it('absent: nothing set, the client applies its defaults (transport/mqtt/pacing.ts)', () => {
    const t = mqttOf('');
    expect(t.connectTimeoutMs).toBeUndefined();
    expect(t.reconnectSpreadMs).toBeUndefined();
  });

  it('connect_timeout and an explicit spread', () => {
    expect(mqttOf('connect_timeout: 3s, reconnect: { spread: 30s }')).toMatchObject({
      connectTimeoutMs: 3_000,
      reconnectSpreadMs: 30_000,
    });
  });

  it('fleet_size gives fleet / rate seconds (default rate 500 connects/s)', () => {
    expect(mqttOf('reconnect: { fleet_size: 20000 }').reconnectSpreadMs).toBe(40_000);
    expect(mqttOf('reconnect: { fleet_size: 20000, rate: 2000 }').reconnectSpreadMs).toBe(10_000);
  });

  it.each([
    ['a connect timeout of 0', 'connect_timeout: 0', /duration/],
    ['a connect timeout over 60s', 'connect_timeout: 61s, timeout: 2m', /connect_timeout must be between 1s and 60s/],
    [
      'a connect timeout longer than the request timeout',
      'connect_timeout: 20s',
      /at most the transport's timeout \(15s\)/,
    ],
    ['a spread over an hour', 'reconnect: { spread: 2h }', /at most 1h/],
    ['a fleet that needs over an hour at its rate', 'reconnect: { fleet_size: 5000000, rate: 1 }', /raise rate/],
    ['both spread and fleet_size', 'reconnect: { spread: 10s, fleet_size: 100 }', /reconnect/],
    ['a fleet of 0', 'reconnect: { fleet_size: 0 }', /reconnect/],
    ['an unknown key', 'reconnect: { jitter: 10s }', /reconnect/],
  ])('%s → config_invalid', (_name, mqtt, re) => {
    const e = refusal(mqtt);
    expect(e.code).toBe('config_invalid');
    expect(e.message).toMatch(re);
  });
});
