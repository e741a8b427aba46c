/**
 * Issue #5: an agent whose identity key cannot leave its hardware (TPM, PKCS#11), with mqtts
 * as its only transport, through mosquitto configured from scripts/mosquitto/*.example
 * (require_certificate + use_identity_as_username + the example ACL, which keeps the bootstrap
 * user away from sigil/v1/renew). It joins as the bootstrap user and gets, with its SVID, an
 * MQTT transport certificate (CN = instance id, software key); its renewal then connects with
 * that certificate — the broker sees username = instance id — and succeeds (generation 2).
 *
 * A renewal killed after it was sent (or after its answer arrived) is resent on the next run and
 * answered from the issuer's idempotency record: the transport key kept with the outbox entry
 * is the one the replayed certificate names, so the renewal after that connects as the
 * instance again.
 *
 * Real processes throughout: mosquitto, `sigil server start --mqtt-url`, `sigil agent`,
 * swtpm for the tpm join, SoftHSM2 for the PKCS#11 token.
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentStatusJson,
  applyResources,
  createToken,
  RESOURCES,
  sigil,
  sigilJson,
  tempDir,
  type RunningIssuer,
} from '../helpers/cli.js';
import {
  type Broker,
  issuerDb,
  type IssuerProcess,
  startExampleBroker,
  writeTransportAgent,
} from '../helpers/mosquitto.js';
import { initSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.js';
import { createLocalCa, simulateBoot, startSwtpm, type SharedLocalCa, type SwtpmInstance } from '../helpers/swtpm.js';

describe('mqtts with a hardware-bound identity key: renewal through the MQTT transport certificate', () => {
  const tmp = tempDir('sigil-mqtt-tls-hw-');
  const dataDir = join(tmp.path, 'issuer');
  const admin = { dataDir } as RunningIssuer;
  const pwFile = join(tmp.path, 'bootstrap.pw');
  let broker: Broker;
  let issuer: IssuerProcess;
  let pin: string;
  let ca: SharedLocalCa;
  let tpm: SwtpmInstance;
  let eventLog: string;
  let token: SoftHsmToken;

  beforeAll(async () => {
    pin = (
      await sigilJson<{ ca_pin: string }>(['server', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org'])
    ).ca_pin;
    ca = await createLocalCa();
    tpm = await startSwtpm({ localCa: ca });
    eventLog = join(tmp.path, 'boot.log');
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);
    token = initSoftHsmToken(join(tmp.path, 'softhsm'));
    await applyResources(
      admin,
      tmp.path,
      `${RESOURCES}---\nkind: join_rule\nname: racks\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles[0]}, ${ca.caFiles[1]}]\n    firmware_profiles: [lab-gateway-v1]\n`,
    );
    ({ broker, issuer } = await startExampleBroker(tmp.path, dataDir, pwFile));
  }, 120_000);
  afterAll(async () => {
    await issuer?.stop();
    await broker?.stop();
    await tpm?.destroy();
    ca?.destroy();
    tmp.cleanup();
  });

  const mqtts = (): string =>
    `{ type: mqtt, url: "${broker.url}", timeout: 10s, bootstrap: { url: "${broker.bootstrapUrl}", username: bootstrap, password_file: ${pwFile} } }`;

  /** The broker's log lines for connections of this instance's client id. */
  const instanceLogins = (log: string, instanceId: string): string[] =>
    log.split('\n').filter((l) => l.includes(` as sigil-${instanceId} `));
  /**
   * The listener port each login came in on. mosquitto logs "New connection from 127.0.0.1:P on
   * port L." then "New client connected from 127.0.0.1:P as <client id> (...)".
   */
  const listenerPorts = (log: string, logins: string[]): number[] =>
    logins.map((l) => {
      const src = /connected from (127\.0\.0\.1:\d+) as /.exec(l)?.[1];
      return Number(new RegExp(`New connection from ${src?.replaceAll('.', '\\.')} on port (\\d+)\\.`).exec(log)?.[1]);
    });

  /**
   * Joined (over the bootstrap listener): renew, and check the renewal connected as the instance,
   * by its transport certificate, with the issuer recording one for each generation.
   */
  async function renewsAsTheInstance(config: string, keyStorage: string): Promise<void> {
    const st = await agentStatusJson(['--config', config]);
    expect(st).toMatchObject({
      key_storage: keyStorage,
      exportable: false,
      generation: 1,
      mqtt_client_cert: 'transport',
    });
    const instanceId: string = st.instance_id;
    const joinLog = broker.log();
    expect(joinLog).toContain(`u'bootstrap'`);
    expect(instanceLogins(joinLog, instanceId)).toEqual([]);

    const renewed = await sigilJson(['agent', 'renew', '--config', config]);
    expect(renewed).toMatchObject({ result: 'renewed', key_storage: keyStorage, exportable: false, generation: 2 });
    const logins = instanceLogins(broker.log().slice(joinLog.length), instanceId);
    // On the certificate listener (require_certificate: the transport certificate was presented).
    expect(logins.length).toBeGreaterThanOrEqual(1);
    expect(listenerPorts(broker.log(), logins)).toEqual(logins.map(() => broker.port));
    const after = await agentStatusJson(['--config', config]);
    expect(after).toMatchObject({
      generation: 2,
      transport: `mqtt ${broker.url}`,
      mqtt_client_cert: 'transport',
      last_error: null,
      pending_request: null,
    });

    const rows = await issuerDb(dataDir, (db) =>
      db
        .prepare('SELECT kind, generation FROM certificates WHERE instance_id = ? ORDER BY generation, kind')
        .all(instanceId),
    );
    expect(rows).toEqual([
      { kind: 'mqtt-transport', generation: 1 },
      { kind: 'x509-svid', generation: 1 },
      { kind: 'mqtt-transport', generation: 2 },
      { kind: 'x509-svid', generation: 2 },
    ]);
  }

  it('tpm join, key_storage: tpm: joins as bootstrap, renews as the instance', async () => {
    const a = join(tmp.path, 'tpm-agent.yaml');
    writeFileSync(
      a,
      `ca_pin: ${pin}\ndata_dir: ${join(tmp.path, 'tpm-agent')}\n` +
        `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: ${eventLog} } }\nkey_storage: tpm\n` +
        `transports:\n  - ${mqtts()}\noutputs:\n  - { type: identity, path: ${join(tmp.path, 'tpm-identity')} }\n`,
    );
    expect(await sigilJson(['agent', 'run', '--config', a, '--once'])).toMatchObject({
      result: 'joined',
      key_storage: 'tpm',
      exportable: false,
      generation: 1,
    });
    await renewsAsTheInstance(a, 'tpm');

    // Killed with the renewal sent, or its answer received but not stored: the next run resends
    // it and stores the replayed answer with the transport key from the outbox.
    let generation = 2;
    for (const point of ['after_send', 'after_response']) {
      const killed = await sigil(['agent', 'renew', '--config', a], { env: { SIGIL_TEST_CRASH_AT: point } });
      expect(killed.code, `${point}: ${killed.stderr}`).toBe(-1);
      expect((await agentStatusJson(['--config', a])).pending_request).toMatch(/^renew /);
      expect(await sigilJson(['agent', 'run', '--config', a, '--once'])).toMatchObject({
        result: 'renewed',
        generation: ++generation,
      });
      const st = await agentStatusJson(['--config', a]);
      expect(st).toMatchObject({ generation, mqtt_client_cert: 'transport', pending_request: null });
      const seen = broker.log().length;
      expect(await sigilJson(['agent', 'renew', '--config', a])).toMatchObject({
        result: 'renewed',
        generation: ++generation,
      });
      const logins = instanceLogins(broker.log().slice(seen), st.instance_id);
      expect(logins.length).toBeGreaterThanOrEqual(1);
      expect(listenerPorts(broker.log(), logins)).toEqual(logins.map(() => broker.port));
    }
    const locked = await issuerDb(dataDir, (db) =>
      db.prepare("SELECT locked FROM instances WHERE join_method = 'tpm'").get(),
    );
    expect(locked).toEqual({ locked: 0 });
  }, 120_000);

  it('token join, key_storage: pkcs11 (SoftHSM2): joins as bootstrap, renews as the instance', async () => {
    const a = writeTransportAgent(tmp.path, 'p11', {
      pin,
      token: await createToken(admin),
      transports: [mqtts()],
      extra: `key_storage: pkcs11\npkcs11: { module: ${token.module}, token: sigil, pin_file: ${token.pinFile}, key_label_prefix: p11 }\n`,
    });
    expect(await sigilJson(['agent', 'run', '--config', a.config, '--once'])).toMatchObject({
      result: 'joined',
      key_storage: 'pkcs11',
      exportable: false,
      generation: 1,
    });
    await renewsAsTheInstance(a.config, 'pkcs11');
  }, 120_000);
});
