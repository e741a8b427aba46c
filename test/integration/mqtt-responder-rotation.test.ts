// An issuer that logs in to the broker with its own serving certificate rotates that certificate
// daily (server/service.ts); the MQTT responder must present the new one on its next connection
// (MqttResponder.setClientIdentity). MQTT.js reconnects with the options it was created with, so
// without a new client the responder would come back after a broker restart with the certificate
// it started with — after 30 days an expired one, which the broker refuses: the issuer would be
// off MQTT for good. Here the first certificate lives a few seconds; after it expired the broker
// restarts, and the responder must log in again (with the rotated certificate).
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { toPem } from '../../src/pki/pem.js';
import { randomSerial } from '../../src/pki/serial.js';
import { MqttResponder } from '../../src/transport/mqtt/responder.js';
import { BOOTSTRAP_PASSWORD, issueBrokerCert, startMosquitto, waitFor, type Broker } from '../helpers/mosquitto.js';
import { startIssuer, type Harness } from './harness.js';

const CLIENT_ID = 'sigil-issuer-rotation-test';
const SHORT_LIFE_MS = 3_000;

let h: Harness;
let broker: Broker;
let responder: MqttResponder | undefined;
const work = mkdtempSync(join(tmpdir(), 'sigil-mqtt-rotation-'));

beforeAll(async () => {
  h = await startIssuer();
  broker = await startMosquitto(join(work, 'broker'), {
    ...issueBrokerCert(h.dir),
    passwords: { bootstrap: BOOTSTRAP_PASSWORD },
  });
}, 60_000);
afterAll(async () => {
  await responder?.stop();
  await broker?.stop();
  await h?.close();
  rmSync(work, { recursive: true, force: true });
});

/** The issuer's serving certificate, but living only `ms` (the same names: CN "Sigil issuer"). */
function shortLivedIdentity(ms: number): { cert: string; key: string; notAfter: number } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = Date.now();
  const der = h.ctx.engine.issueSvid({
    serial: randomSerial(),
    spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
    spiffeId: 'spiffe://example.org/sigil/issuer',
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + ms),
    subject: [
      ['O', 'Sigil'],
      ['CN', 'Sigil issuer'],
    ],
  });
  return {
    cert: toPem('CERTIFICATE', der) + toPem('CERTIFICATE', h.ctx.ca.intermediateDer),
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    notAfter: now + ms,
  };
}

const logins = (): number =>
  broker
    .log()
    .split('\n')
    .filter((l) => l.includes(`as ${CLIENT_ID} `)).length;

it('after the broker restarts, the responder logs in with its rotated certificate, not the expired one it started with', async () => {
  const first = shortLivedIdentity(SHORT_LIFE_MS);
  responder = new MqttResponder({
    ctx: h.ctx,
    url: broker.issuerUrl,
    ca: h.rootPem,
    cert: first.cert,
    key: first.key,
    clientId: CLIENT_ID,
  });
  await responder.start();
  expect(logins()).toBe(1);

  // The service's daily rotation hands the responder the new serving identity.
  responder.setClientIdentity(h.ctx.server.certPem, h.ctx.server.keyPem);
  await new Promise((r) => setTimeout(r, Math.max(0, first.notAfter - Date.now() + 500)));
  await broker.stop();
  await broker.start();
  // Reconnect delay is 0.5–5 s; the expired certificate would be refused at every attempt.
  await waitFor('the responder to log in again after the restart', () => (logins() >= 2 ? true : undefined), 20_000);
  expect(logins()).toBe(2);
}, 60_000);
