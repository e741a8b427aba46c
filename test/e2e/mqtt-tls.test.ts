/**
 * MQTT over TLS with client-certificate authentication, through mosquitto configured from
 * scripts/mosquitto/mosquitto.conf.example + dynamic-security.json.example. The broker's certificate comes from
 * the Sigil CA; the agent learns the root by its pin on first contact, joins as the restricted
 * bootstrap user (password listener), then renews presenting its Sigil-issued SVID on the
 * certificate listener. The dynamic-security plugin confines every non-issuer to asking and to
 * reading answers: none of them may subscribe to the requests (mqtt-hostile-subscribers.test.ts
 * shows why that matters).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentStatusJson,
  applyResources,
  createToken,
  sigil,
  sigilJson,
  tempDir,
  type RunningIssuer,
} from '../helpers/cli.js';
import {
  BOOTSTRAP_PASSWORD,
  type Broker,
  issueBrokerCert,
  type IssuerProcess,
  startExampleBroker,
  writeTransportAgent,
} from '../helpers/mosquitto.js';

const openssl = (...args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8' });

describe('MQTT over TLS with Sigil client certificates and the example ACL', () => {
  const tmp = tempDir('sigil-mqtt-tls-');
  const dataDir = join(tmp.path, 'issuer');
  const admin = { dataDir } as RunningIssuer;
  let broker: Broker;
  let issuer: IssuerProcess;
  let pin: string;
  let rootPem: string;
  const pwFile = join(tmp.path, 'bootstrap.pw');

  beforeAll(async () => {
    pin = (
      await sigilJson<{ ca_pin: string }>(['server', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org'])
    ).ca_pin;
    await applyResources(admin, tmp.path);
    const cert = issueBrokerCert(dataDir);
    rootPem = cert.caPem;
    // A factory CA whose device certificates (CN=bootstrap) are the other kind of bootstrap
    // identity: accepted on the certificate listener next to Sigil SVIDs.
    const f = (n: string): string => join(tmp.path, n);
    openssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      f('factory-ca.key'),
      '-out',
      f('factory-ca.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=factory CA',
    );
    openssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      f('device.key'),
      '-out',
      f('device.csr'),
      '-subj',
      '/CN=bootstrap',
    );
    writeFileSync(f('device.ext'), 'extendedKeyUsage=clientAuth\n');
    openssl(
      'x509',
      '-req',
      '-in',
      f('device.csr'),
      '-CA',
      f('factory-ca.pem'),
      '-CAkey',
      f('factory-ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      f('device.ext'),
      '-out',
      f('device.pem'),
    );
    const caPem = cert.caPem + readFileSync(f('factory-ca.pem'), 'utf8');
    // No --mqtt-cert-file: the issuer presents its own serving certificate (CN "Sigil issuer")
    // on the issuers' own listener.
    ({ broker, issuer } = await startExampleBroker(tmp.path, dataDir, pwFile, { caPem, issuerCaPem: cert.caPem }));
  });
  afterAll(async () => {
    await issuer?.stop();
    await broker?.stop();
    tmp.cleanup();
  });

  const mqttTransport = (extra = ''): string =>
    `{ type: mqtt, url: "${broker.url}", timeout: 10s, bootstrap: { url: "${broker.bootstrapUrl}", username: bootstrap, password_file: ${pwFile} }${extra} }`;

  it('joins as the bootstrap user, renews with its SVID as client certificate (CN = instance id)', async () => {
    const a = writeTransportAgent(tmp.path, 'tls1', {
      pin,
      token: await createToken(admin),
      transports: [mqttTransport()],
    });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(joined.result).toBe('joined');
    const instanceId = joined.spiffe_id.split('/').pop();
    const svid = join(a.outDir, 'svid.pem');
    expect(openssl('x509', '-in', svid, '-noout', '-subject')).toMatch(
      new RegExp(`subject=O = example.org, CN = ${instanceId}`),
    );
    // The SAN stays the identity and is no longer critical once the subject is not empty.
    expect(openssl('x509', '-in', svid, '-noout', '-text')).toMatch(/X509v3 Subject Alternative Name: \n\s+URI:spiffe/);

    const renewed = await sigilJson(['agent', 'renew', '--config', a.config]);
    expect(renewed).toMatchObject({ result: 'renewed', generation: 2 });
    // The renewal came in on the certificate listener, the join as the bootstrap login.
    expect(broker.log()).toMatch(new RegExp(`New connection from 127\\.0\\.0\\.1:\\d+ on port ${broker.port}\\.`));
    expect(broker.log()).toContain(` as sigil-${instanceId} `);
    expect(broker.log()).toContain(`u'bootstrap'`);
    expect((await agentStatusJson(['--config', a.config])).transport).toBe(`mqtt ${broker.url}`);
  });

  it('the dynamic-security roles: agents ask and read answers, never requests; bootstrap logins cannot renew', async () => {
    const a = writeTransportAgent(tmp.path, 'acl-a', {
      pin,
      token: await createToken(admin),
      transports: [mqttTransport()],
    });
    await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    const aCert = readFileSync(join(a.outDir, 'svid.pem'), 'utf8');
    const aKey = readFileSync(join(a.outDir, 'svid.key'), 'utf8');
    const asA = await connectAsync(broker.url, {
      protocolVersion: 5,
      ca: rootPem,
      cert: aCert,
      key: aKey,
      reconnectPeriod: 0,
    });
    try {
      // Refused at SUBSCRIBE (MQTT v5 SUBACK reason 0x87), not granted and filtered at delivery.
      await expect(asA.subscribeAsync('sigil/v1/renew', { qos: 1 })).rejects.toThrow(/Not authorized/i);
      await expect(asA.subscribeAsync('sigil/v1/resp/#', { qos: 1 })).rejects.toThrow(/Not authorized/i);
      await expect(asA.publishAsync('sigil/v1/resp/x', '{}', { qos: 1 })).rejects.toThrow(/Not authorized/i);
      // Its own answers it may read (any one-level answer topic: the plugin has no %u).
      expect((await asA.subscribeAsync('sigil/v1/resp/x', { qos: 1 }))[0]!.qos).toBe(1);
    } finally {
      await asA.endAsync();
    }
    const boot = await connectAsync(broker.bootstrapUrl!, {
      protocolVersion: 5,
      ca: rootPem,
      username: 'bootstrap',
      password: BOOTSTRAP_PASSWORD,
      reconnectPeriod: 0,
    });
    try {
      await expect(boot.publishAsync('sigil/v1/renew', '{}', { qos: 1 })).rejects.toThrow(/Not authorized/i);
      await expect(boot.subscribeAsync('sigil/v1/resp/x', { qos: 1 })).rejects.toThrow(/Not authorized/i);
    } finally {
      await boot.endAsync();
    }
    // A client without a certificate cannot even connect to the certificate listener, and an
    // instance's certificate is refused everything on the issuers' listener.
    await expect(
      connectAsync(broker.url, {
        protocolVersion: 5,
        ca: rootPem,
        username: 'bootstrap',
        password: BOOTSTRAP_PASSWORD,
        reconnectPeriod: 0,
        connectTimeout: 3000,
      }),
    ).rejects.toThrow();
    const onIssuers = await connectAsync(broker.issuerUrl, {
      protocolVersion: 5,
      ca: rootPem,
      cert: aCert,
      key: aKey,
      reconnectPeriod: 0,
    });
    try {
      await expect(onIssuers.subscribeAsync('$share/sigil/sigil/v1/+', { qos: 1 })).rejects.toThrow(/Not authorized/i);
    } finally {
      await onIssuers.endAsync();
    }
  });

  it('a bootstrap client certificate (factory CA, CN=bootstrap) works on the certificate listener', async () => {
    const a = writeTransportAgent(tmp.path, 'factory', {
      pin,
      token: await createToken(admin),
      transports: [
        `{ type: mqtt, url: "${broker.url}", timeout: 10s, bootstrap: { cert: ${join(tmp.path, 'device.pem')}, key: ${join(tmp.path, 'device.key')} } }`,
      ],
    });
    expect(await sigilJson(['agent', 'run', '--config', a.config, '--once'])).toMatchObject({ result: 'joined' });
    expect(await sigilJson(['agent', 'renew', '--config', a.config])).toMatchObject({
      result: 'renewed',
      generation: 2,
    });
  });

  it('a wrong bootstrap password is a retryable failure naming the broker refusal', async () => {
    const bad = join(tmp.path, 'bad.pw');
    writeFileSync(bad, 'nope\n');
    const a = writeTransportAgent(tmp.path, 'badpw', {
      pin,
      token: await createToken(admin),
      transports: [
        `{ type: mqtt, url: "${broker.url}", timeout: 5s, bootstrap: { url: "${broker.bootstrapUrl}", username: bootstrap, password_file: ${bad} } }`,
      ],
    });
    const r = await sigil(['agent', 'run', '--config', a.config, '--once']);
    expect(r.code).toBe(75);
    expect(r.stderr).toMatch(/error\[issuer_unreachable\].*(Not authorized|not authorised)/i);
  });
});
