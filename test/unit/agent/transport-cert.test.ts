/**
 * Which identity an agent shows an MQTT broker (agent/transports.ts mqttSession with
 * agent/transport-cert.ts): over mqtts the SVID for a software key, the transport certificate
 * for a hardware key, the bootstrap identity when neither is valid for 30 s more; over plain
 * mqtt the instance's client id whatever the key. And when a join or renewal asks for a
 * transport certificate at all.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TransportConfig } from '../../../src/agent/config.js';
import { openAgentState, type AgentState, type Identity } from '../../../src/agent/state/index.js';
import { agentStatus } from '../../../src/agent/status.js';
import {
  mqttClientCert,
  mqttsRenewalMarginWarning,
  transportCertOf,
  wantsTransportCert,
} from '../../../src/agent/transport-cert.js';
import { mqttSession } from '../../../src/agent/transports.js';
import { SoftwareSigner } from '../../../src/keystore/software.js';
import { silentLogger } from '../../../src/util/log.js';
import { fakeIdentity } from '../../helpers/agent-identity.js';
import type { IdentityResult } from '../../../src/protocol/messages.js';

const NOW = 1_700_000_000_000;
const HOUR = 3_600_000;
const TPM_REF = JSON.stringify({
  storage: 'tpm',
  tcti: 'swtpm:port=1',
  parent: 0x81000001,
  publicB64: 'AA',
  privateB64: 'AA',
});
const TRANSPORT = {
  keyPem: '-----BEGIN PRIVATE KEY-----\nTK\n-----END PRIVATE KEY-----\n',
  chainPem: ['TLEAF\n', 'INT\n'],
  notAfter: NOW + HOUR,
};

let dir: string;
let state: AgentState;
let pwFile: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-transport-cert-'));
  state = openAgentState(join(dir, 'data'));
  pwFile = join(dir, 'pw');
  writeFileSync(pwFile, 'secret\n');
});
afterEach(() => {
  state.close();
  rmSync(dir, { recursive: true, force: true });
});

function identity(over: Partial<Identity> = {}): Identity {
  const times = { notBefore: NOW - HOUR, notAfter: NOW + HOUR, issuedAt: NOW - HOUR, renewAfter: NOW };
  return fakeIdentity({
    spiffeId: 'spiffe://example.org/bot/gw/inst-1',
    bot: 'gw',
    chainPem: ['SVID\n', 'INT\n'],
    keyRef: JSON.stringify({ storage: 'software', pkcs8Pem: 'SVIDKEY' }),
    serial: '01',
    joinMethod: 'tpm',
    ...times,
    ...over,
  });
}

const mqtt = (url: string): Extract<TransportConfig, { type: 'mqtt' }> => ({
  type: 'mqtt',
  url,
  timeoutMs: 1000,
  sessionExpiryS: 60,
  bootstrap: { url: 'mqtts://broker:8884', username: 'bootstrap', passwordFile: pwFile },
});

describe('mqttSession: the client certificate on an mqtts:// broker', () => {
  it('a software key: the SVID itself', () => {
    state.saveIdentity(identity());
    expect(mqttSession(mqtt('mqtts://broker:8883'), state, () => NOW)).toEqual({
      clientId: 'sigil-inst-1',
      responseId: 'inst-1',
      cert: 'SVID\nINT\n',
      key: 'SVIDKEY',
    });
    expect(agentStatus(state, NOW, { mqtt: true }).mqtt_client_cert).toBe('svid');
  });

  it('a TPM key with a transport certificate: the transport certificate and its key, as the instance', () => {
    state.saveIdentity(identity({ keyRef: TPM_REF, keyStorage: 'tpm', exportable: false, transport: TRANSPORT }));
    expect(mqttSession(mqtt('mqtts://broker:8883'), state, () => NOW)).toEqual({
      clientId: 'sigil-inst-1',
      responseId: 'inst-1',
      cert: 'TLEAF\nINT\n',
      key: TRANSPORT.keyPem,
    });
    expect(agentStatus(state, NOW, { mqtt: true }).mqtt_client_cert).toBe('transport');
  });

  it('a TPM key without one, or with one about to expire: the bootstrap identity', () => {
    state.saveIdentity(identity({ keyRef: TPM_REF, keyStorage: 'tpm', exportable: false }));
    const s = mqttSession(mqtt('mqtts://broker:8883'), state, () => NOW);
    expect(s).toMatchObject({ url: 'mqtts://broker:8884', username: 'bootstrap', password: 'secret' });
    expect(s.clientId).toMatch(/^sigil-b-[0-9a-f]{24}$/);
    expect(s).not.toHaveProperty('cert');
    expect(agentStatus(state, NOW, { mqtt: true }).mqtt_client_cert).toBe('bootstrap');

    state.saveIdentity(
      identity({
        keyRef: TPM_REF,
        keyStorage: 'tpm',
        exportable: false,
        transport: { ...TRANSPORT, notAfter: NOW + 29_000 },
      }),
    );
    expect(mqttSession(mqtt('mqtts://broker:8883'), state, () => NOW)).toMatchObject({ username: 'bootstrap' });
    expect(mqttClientCert(state.getIdentity()!, NOW)).toBeUndefined();
  });

  it('an SVID about to expire: the bootstrap identity, transport certificate or not', () => {
    state.saveIdentity(
      identity({ keyRef: TPM_REF, keyStorage: 'tpm', exportable: false, transport: TRANSPORT, notAfter: NOW + 29_000 }),
    );
    expect(mqttSession(mqtt('mqtts://broker:8883'), state, () => NOW)).toMatchObject({ username: 'bootstrap' });
    expect(agentStatus(state, NOW, { mqtt: true }).mqtt_client_cert).toBe('bootstrap');
  });

  it('plain mqtt://: the instance (bootstrap login, no certificate), whatever the key', () => {
    state.saveIdentity(identity({ keyRef: TPM_REF, keyStorage: 'tpm', exportable: false }));
    expect(mqttSession(mqtt('mqtt://broker:1883'), state, () => NOW)).toEqual({
      clientId: 'sigil-inst-1',
      responseId: 'inst-1',
      username: 'bootstrap',
      password: 'secret',
    });
  });
});

describe('wantsTransportCert', () => {
  const https = { type: 'https' as const, url: 'https://issuer:8443', timeoutMs: 1000 };
  it('only for a key that is not software and an mqtts:// transport', () => {
    expect(wantsTransportCert({ keyStorage: 'tpm', transports: [mqtt('mqtts://b:8883')] })).toBe(true);
    expect(wantsTransportCert({ keyStorage: 'pkcs11', transports: [https, mqtt('mqtts://b:8883')] })).toBe(true);
    expect(wantsTransportCert({ keyStorage: 'software', transports: [mqtt('mqtts://b:8883')] })).toBe(false);
    expect(wantsTransportCert({ keyStorage: 'tpm', transports: [mqtt('mqtt://b:1883'), https] })).toBe(false);
  });
});

describe('transportCertOf', () => {
  const result = (chain?: string[]): IdentityResult =>
    ({ serial: '01', ...(chain ? { transport_chain: chain } : {}) }) as IdentityResult;
  it('nothing asked, nothing kept; an answer without one or for another key: none, the identity stands', () => {
    const key = SoftwareSigner.generate().toPkcs8Pem();
    expect(transportCertOf(undefined, result(['x']), silentLogger())).toBeUndefined();
    expect(transportCertOf(key, result(), silentLogger())).toBeUndefined();
    expect(transportCertOf(key, result(['not a certificate']), silentLogger())).toBeUndefined();
  });
});

describe('mqttsRenewalMarginWarning', () => {
  it('a lifetime whose renewal can fall in the last 30 s gets a warning that names the cause and a ttl that works', () => {
    const w = mqttsRenewalMarginWarning(30_000, 0.5);
    expect(w).toMatch(/^certificates of 30 s renewed at 0.5 of their lifetime leave as little as 13 s/);
    expect(w).toMatch(/last 30 s use the bootstrap login/);
    expect(w).toMatch(/ttl of at least 134 s/);
    // 60 s at 0.5: 27 s left at the earliest renewal, still inside the margin.
    expect(mqttsRenewalMarginWarning(60_000, 0.5)).toBeDefined();
  });

  it('no warning once the earliest renewal leaves more than the margin', () => {
    expect(mqttsRenewalMarginWarning(134_000, 0.5)).toBeUndefined();
    expect(mqttsRenewalMarginWarning(3_600_000, 0.5)).toBeUndefined();
    // A high renew_fraction eats the margin even of a longer lifetime.
    expect(mqttsRenewalMarginWarning(300_000, 0.85)).toBeDefined();
  });
});
