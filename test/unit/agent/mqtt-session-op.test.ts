/**
 * The MQTT session an agent uses for each operation names the response topic the issuer will
 * answer on (transport/mqtt/answer-topic.ts): a join always from the bootstrap session
 * (sigil/v1/resp/bootstrap/<id>), a renewal from the instance's (sigil/v1/resp/<instance>) —
 * over plain mqtt:// to the end of the certificate's life, since no client certificate expires
 * there; over mqtts:// only while the certificate has CLIENT_CERT_MARGIN_MS left.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TransportConfig } from '../../../src/agent/config.js';
import { openAgentState, type AgentState, type Identity } from '../../../src/agent/state/index.js';
import { CLIENT_CERT_MARGIN_MS } from '../../../src/agent/transport-cert.js';
import { mqttSession } from '../../../src/agent/transports.js';
import { responseTarget } from '../../../src/transport/mqtt/topics.js';
import { answerTopicFits, signerAnswerDrop } from '../../../src/transport/mqtt/answer-topic.js';
import { fakeIdentity } from '../../helpers/agent-identity.js';

const NOW = 1_700_000_000_000;
const HOUR = 3_600_000;
let dir: string;
let state: AgentState;
let pwFile: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-mqtt-session-'));
  state = openAgentState(join(dir, 'data'));
  pwFile = join(dir, 'pw');
  writeFileSync(pwFile, 'secret\n');
});
afterEach(() => {
  state.close();
  rmSync(dir, { recursive: true, force: true });
});

const identity = (notAfter: number): Identity =>
  fakeIdentity({
    spiffeId: 'spiffe://example.org/bot/gw/inst-1',
    bot: 'gw',
    chainPem: ['SVID\n', 'INT\n'],
    keyRef: JSON.stringify({ storage: 'software', pkcs8Pem: 'SVIDKEY' }),
    serial: '01',
    joinMethod: 'oidc',
    notBefore: NOW - HOUR,
    notAfter,
    issuedAt: NOW - HOUR,
    renewAfter: NOW,
  });
const mqtt = (url: string): Extract<TransportConfig, { type: 'mqtt' }> => ({
  type: 'mqtt',
  url,
  timeoutMs: 1000,
  sessionExpiryS: 60,
  bootstrap: { url: 'mqtts://broker:8884', username: 'bootstrap', passwordFile: pwFile },
});
const topic = (responseId: string): string => `sigil/v1/resp/${responseId}`;

describe('mqttSession(op): the topic the issuer answers on', () => {
  it('a join goes out from the bootstrap session even with a valid identity (oidc re-joins on every renewal)', () => {
    state.saveIdentity(identity(NOW + HOUR));
    for (const url of ['mqtt://broker:1883', 'mqtts://broker:8883']) {
      const s = mqttSession(mqtt(url), state, () => NOW, 'join');
      expect(responseTarget(topic(s.responseId))?.kind).toBe('bootstrap');
      expect(answerTopicFits('join', topic(s.responseId))).toBe(true);
    }
  });

  it('a renewal goes out from the instance session, and only that topic gets its answer', () => {
    state.saveIdentity(identity(NOW + HOUR));
    const s = mqttSession(mqtt('mqtts://broker:8883'), state, () => NOW, 'renew');
    expect(s.responseId).toBe('inst-1');
    expect(s.bootstrap).toBeUndefined();
    expect(signerAnswerDrop(topic(s.responseId), 'inst-1')).toBeUndefined();
  });

  it('plain mqtt:// in the certificate’s last 30 s: still the instance session (no client certificate to expire)', () => {
    state.saveIdentity(identity(NOW + CLIENT_CERT_MARGIN_MS - 1_000));
    expect(mqttSession(mqtt('mqtt://broker:1883'), state, () => NOW, 'renew')).toMatchObject({
      clientId: 'sigil-inst-1',
      responseId: 'inst-1',
    });
    // mqtts:// cannot present that certificate any more: the bootstrap session, which the issuer
    // does not answer renewals on (the known gap docs/mqtt.md describes).
    const tls = mqttSession(mqtt('mqtts://broker:8883'), state, () => NOW, 'renew');
    expect(responseTarget(topic(tls.responseId))?.kind).toBe('bootstrap');
    expect(answerTopicFits('renew', topic(tls.responseId))).toBe(false);
    // Marked as such, so a broker's refusal of the renewal says why (client.ts publishRefused).
    expect(tls.bootstrap).toBe(true);
  });
});

describe('answer-topic rules', () => {
  it('join and unknown ops: bootstrap only; bundle: bootstrap or instance; renew, credential: the signer’s topic only', () => {
    expect(answerTopicFits('join', 'sigil/v1/resp/inst-1')).toBe(false);
    expect(answerTopicFits('unknown', 'sigil/v1/resp/inst-1')).toBe(false);
    expect(answerTopicFits('join', 'sigil/v1/resp/a/b/c')).toBe(false);
    expect(answerTopicFits('bundle', 'sigil/v1/resp/inst-1')).toBe(true);
    expect(answerTopicFits('bundle', 'sigil/v1/resp/bootstrap/x')).toBe(true);
    expect(answerTopicFits('bundle', 'sigil/v1/resp/bootstrap')).toBe(false);
    expect(answerTopicFits('renew', 'sigil/v1/resp/bootstrap/x')).toBe(false);
    // credential follows the renewal's rule (the operation table: answerTo 'signer').
    expect(answerTopicFits('credential', 'sigil/v1/resp/bootstrap/x')).toBe(false);
    expect(answerTopicFits('credential', 'sigil/v1/resp/inst-1')).toBe(true);
    expect(signerAnswerDrop('sigil/v1/resp/inst-2', 'inst-1')).toBe('bad_response_topic');
    expect(signerAnswerDrop('sigil/v1/resp/inst-1', undefined)).toBe('unauthenticated');
  });
});
