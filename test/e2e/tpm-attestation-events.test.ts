import 'reflect-metadata';
/**
 * Continuous attestation's violations pushed out and acted on (issue #16, "How it will be
 * checked"), end to end with the real `sigil server` and `sigil agent` processes (dist/), a real
 * swtpm with a simulated measured boot, a real mosquitto and openssl:
 *
 * - the issuer runs with `--event-webhook` (an HTTPS receiver in this test, behind a CA of its
 *   own passed as `--event-webhook-ca`) and `--mqtt-url` (a test subscriber on
 *   `sigil/v1/events/#`); the agent renews over HTTPS under a join rule with a firmware profile
 *   and `on_attestation_failure: lock`;
 * - tpm2_pcrextend breaks the profile's PCR 16: the next renewal is refused with the PCR diff;
 *   the webhook and the MQTT subscriber EACH get exactly `attestation_failed` then
 *   `instance_locked` (plus the lock's `certificate_revoked`), every one a JWS that verifies
 *   against the agent's trust bundle and carries the PCR diff;
 * - the instance is locked (`sigil ctl instances show`), the CRL served at GET /v1/crl lists the
 *   current certificate, and a mosquitto listener with `require_certificate true` + `crlfile`
 *   refuses a TLS client presenting that certificate with its TPM-resident key — the same client
 *   that the same listener accepted with the CRL from before the lock, and while a certificate not
 *   on the CRL is accepted next to it;
 * - `sigil ctl unlock` is pushed as `instance_unlocked` on both.
 *
 * Waits are for the message (poll the receivers until it is there), never a sleep.
 */
import { X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Crl } from '@peculiar/x509';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyEvent } from '../../src/server/events/verify.js';
import type { SigilEvent } from '../../src/server/events/event.js';
import { applyResources, sigil, sigilJson, tempDir, type RunningIssuer } from '../helpers/cli.js';
import { startCrlBroker, tlsClient, type TlsClientVerdict } from '../helpers/crl-broker.js';
import {
  issueBrokerCert,
  prepareMqttIssuer,
  spawnIssuer,
  waitFor,
  type Broker,
  type IssuerProcess,
} from '../helpers/mosquitto.js';
import { OpensslPki } from '../helpers/openssl-pki.js';
import { startTabrmd } from '../helpers/tabrmd.js';
import {
  createLocalCa,
  simulateBoot,
  startSwtpm,
  tpm2Tool,
  type SharedLocalCa,
  type SwtpmInstance,
} from '../helpers/swtpm.js';
import { LAB_ATTESTED_PROFILE } from '../helpers/firmware-boot.js';

const ZERO = '00'.repeat(32);
const EXTEND = 'ab'.repeat(32);
/** The types this test follows; certificate_revoked is checked on its own (one per live certificate). */
const FOLLOWED = new Set(['attestation_failed', 'instance_locked', 'instance_unlocked']);

describe('attestation failure under `lock`: signed events on a webhook and MQTT, the CRL and mosquitto crlfile (swtpm)', () => {
  const tmp = tempDir('sigil-attest-events-');
  const dataDir = join(tmp.path, 'issuer');
  const identity = join(tmp.path, 'identity');
  const savedDir = process.env.SIGIL_FIRMWARE_PROFILES_DIR;
  let ca: SharedLocalCa;
  let tpm: SwtpmInstance;
  let broker: Broker;
  let issuer: IssuerProcess;
  let pin: string;
  let config: string;
  let receiver: Server;
  let subscriber: mqtt.MqttClient;
  /** Raw bodies the webhook received (in arrival order), and the MQTT messages. */
  const hookBodies: string[] = [];
  const hookContentTypes: string[] = [];
  const mqttMessages: Array<{ topic: string; payload: string }> = [];

  const bundle = (): string => readFileSync(join(identity, 'bundle.pem'), 'utf8');
  const currentSerial = (): string =>
    new X509Certificate(readFileSync(join(identity, 'svid.pem'))).serialNumber.toLowerCase();
  const instance = async (): Promise<any> => (await sigilJson(['ctl', '--data-dir', dataDir, 'instances', 'ls']))[0];
  /** Every event each sink received, verified against the agent's trust bundle (throws on a bad one). */
  const hookEvents = (): SigilEvent[] => hookBodies.map((b) => verifyEvent(b, bundle()));
  const mqttEvents = (): Array<{ topic: string; ev: SigilEvent }> =>
    mqttMessages.map((m) => ({ topic: m.topic, ev: verifyEvent(m.payload, bundle()) }));
  const followed = (evs: SigilEvent[], id: string): SigilEvent[] =>
    evs.filter((e) => e.instance_id === id && FOLLOWED.has(e.type));
  /** GET /v1/crl through `sigil ctl ca crl --server` (TLS checked against the pinned root), as PEM. */
  const servedCrl = async (name: string): Promise<{ file: string; serials: string[] }> => {
    const file = join(tmp.path, name);
    await sigilJson(['ctl', '--server', issuer.url, '--ca-pin', pin, 'ca', 'crl', '--out', file]);
    const crl = new X509Crl(readFileSync(file, 'utf8'));
    return { file, serials: crl.entries.map((e) => e.serialNumber.toLowerCase()) };
  };
  /** Start a crlfile broker on `crlFile`, connect with the agent's certificate and TPM key (and a healthy one). */
  const brokerVerdicts = async (
    name: string,
    crlFile: string,
  ): Promise<{ agent: TlsClientVerdict; healthy: TlsClientVerdict; log: string }> => {
    const dir = join(tmp.path, name);
    const caFile = join(identity, 'bundle.pem');
    const b = await startCrlBroker(dir, dataDir, caFile, crlFile);
    try {
      // The TPM-resident key through OpenSSL's tpm2 provider, behind a resource manager.
      const rm = await startTabrmd(tpm.tcti);
      let agent: TlsClientVerdict;
      try {
        agent = await tlsClient(b.port, {
          certFile: join(identity, 'svid.pem'),
          keyFile: join(identity, 'svid.tss2.pem'),
          caFile,
          tpmEnv: rm.env,
        });
      } finally {
        await rm.stop();
      }
      // A certificate of the same CA that is on no CRL (a software key): the listener does accept clients.
      const other = issueBrokerCert(dataDir);
      writeFileSync(join(dir, 'healthy.pem'), other.certPem);
      writeFileSync(join(dir, 'healthy.key'), other.keyPem, { mode: 0o600 });
      const healthy = await tlsClient(b.port, {
        certFile: join(dir, 'healthy.pem'),
        keyFile: join(dir, 'healthy.key'),
        caFile,
      });
      return { agent, healthy, log: b.log() };
    } finally {
      await b.stop();
    }
  };

  beforeAll(async () => {
    const profiles = join(tmp.path, 'profiles');
    mkdirSync(profiles);
    writeFileSync(join(profiles, 'lab-attested.yaml'), LAB_ATTESTED_PROFILE);
    // The issuer process inherits it (attest/firmware/profiles.ts).
    process.env.SIGIL_FIRMWARE_PROFILES_DIR = profiles;
    ca = await createLocalCa();
    tpm = await startSwtpm({ localCa: ca });
    const eventLog = join(tmp.path, 'boot.log');
    writeFileSync(eventLog, (await simulateBoot(tpm)).eventLog);

    // The webhook receiver: HTTPS (the issuer sends to https:// only) behind a CA made by openssl.
    const pki = new OpensslPki(join(tmp.path, 'hook-pki'));
    const hookCa = pki.root('hook-ca', '/CN=Webhook Test CA', 'ec');
    const leaf = pki.leaf('hook', hookCa, '/CN=127.0.0.1', {
      san: 'IP:127.0.0.1',
      ext: [
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature',
        'extendedKeyUsage = serverAuth',
      ],
    });
    receiver = createServer({ cert: leaf.pem, key: readFileSync(leaf.key) }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/sigil-events') {
          hookContentTypes.push(String(req.headers['content-type']));
          hookBodies.push(Buffer.concat(chunks).toString('ascii'));
        }
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const hookUrl = `https://127.0.0.1:${(receiver.address() as { port: number }).port}/sigil-events`;

    // The broker, with the issuer data dir (role + bot) and a subscriber on the events topic.
    const rig = await prepareMqttIssuer(tmp.path, dataDir);
    broker = rig.broker;
    pin = rig.pin;
    subscriber = mqtt.connect(broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
    await new Promise<void>((resolve, reject) => {
      subscriber.once('connect', () =>
        subscriber.subscribe('sigil/v1/events/#', { qos: 1 }, (e) => (e ? reject(e) : resolve())),
      );
      subscriber.once('error', reject);
    });
    subscriber.on('message', (topic, payload) => mqttMessages.push({ topic, payload: payload.toString('ascii') }));

    await applyResources(
      { dataDir } as RunningIssuer,
      tmp.path,
      `kind: join_rule\nname: attested\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n    ek_ca_files: [${ca.caFiles![0]}, ${ca.caFiles![1]}]\n    firmware_profiles: [lab-attested]\n    on_attestation_failure: lock\n`,
    );
    issuer = await spawnIssuer(dataDir, [
      '--mqtt-url',
      broker.url,
      '--event-webhook',
      hookUrl,
      '--event-webhook-ca',
      hookCa.cert,
    ]);
    config = join(tmp.path, 'agent.yaml');
    writeFileSync(
      config,
      `issuer: ${issuer.url}\nca_pin: ${pin}\ndata_dir: ${join(tmp.path, 'agent')}\n` +
        `join: { method: tpm, tpm: { tcti: "${tpm.tcti}", event_log: ${eventLog} } }\nkey_storage: tpm\n` +
        `outputs:\n  - { type: identity, path: ${identity} }\n`,
    );
  }, 120_000);

  afterAll(async () => {
    if (savedDir === undefined) delete process.env.SIGIL_FIRMWARE_PROFILES_DIR;
    else process.env.SIGIL_FIRMWARE_PROFILES_DIR = savedDir;
    subscriber?.end(true);
    await issuer?.stop();
    await broker?.stop();
    await new Promise((r) => (receiver ? receiver.close(r) : r(undefined)));
    await tpm?.destroy();
    ca?.destroy();
    tmp.cleanup();
  });

  let id: string;
  let preLockCrl: string;

  it('joins and renews with a fresh quote; a crlfile broker accepts the agent’s TPM-key certificate', async () => {
    expect(await sigilJson(['agent', 'run', '--config', config, '--once'])).toMatchObject({ result: 'joined' });
    expect(await sigilJson(['agent', 'renew', '--config', config])).toMatchObject({ result: 'renewed', generation: 2 });
    id = (await instance()).id;
    const crl = await servedCrl('crl-before.pem');
    expect(crl.serials).not.toContain(currentSerial());
    preLockCrl = crl.file;
    // The positive control: this listener, this client, this certificate and key — accepted.
    const v = await brokerVerdicts('broker-before', preLockCrl);
    expect(v.agent.accepted, `${v.agent.out}\n--- broker ---\n${v.log}`).toBe(true);
    expect(v.healthy.accepted, v.healthy.out).toBe(true);
  }, 120_000);

  it('an extended PCR: the renewal is refused with the PCR diff, and both sinks get attestation_failed then instance_locked, signed', async () => {
    const serial = currentSerial();
    await tpm2Tool(tpm, 'tpm2_pcrextend', [`16:sha256=${EXTEND}`]);
    try {
      const r = await sigil(['agent', 'renew', '--config', config]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/pcr_mismatch.*is locked/);
      expect(r.stderr).toMatch(new RegExp(`PCR diff: sha256:16 expected ${ZERO} got [0-9a-f]{64}`));
    } finally {
      await tpm2Tool(tpm, 'tpm2_pcrreset', ['16']);
    }

    // The lock's certificate_revoked follows both (after the CRL is re-derived): wait for it on each
    // sink, so that everything this lock produces has arrived before counting.
    const revokedOn = (evs: SigilEvent[]): boolean =>
      evs.some((e) => e.type === 'certificate_revoked' && e.instance_id === id && e.data['serial'] === serial);
    await waitFor('certificate_revoked on the webhook', () => revokedOn(hookEvents()), 30_000);
    await waitFor('certificate_revoked on MQTT', () => revokedOn(mqttEvents().map((m) => m.ev)), 30_000);

    for (const [sink, evs] of [
      ['webhook', hookEvents()],
      ['mqtt', mqttEvents().map((m) => m.ev)],
    ] as const) {
      const mine = followed(evs, id);
      expect(
        mine.map((e) => e.type),
        sink,
      ).toEqual(['attestation_failed', 'instance_locked']);
      const [failed, locked] = mine as [SigilEvent, SigilEvent];
      expect(failed.data, sink).toMatchObject({ op: 'renew', check: 'pcr_mismatch', method: 'tpm' });
      expect(failed.data['pcr_diff'], sink).toEqual([
        { bank: 'sha256', pcr: 16, expected: [ZERO], got: expect.stringMatching(/^[0-9a-f]{64}$/) },
      ]);
      expect(failed.data['pcr_diff']).not.toEqual([{ bank: 'sha256', pcr: 16, expected: [ZERO], got: ZERO }]);
      expect(locked.data, sink).toMatchObject({ by: 'system', cause: 'attestation_failed' });
      expect(locked.data['pcr_diff'], sink).toEqual(failed.data['pcr_diff']);
      expect(failed.audit_seq!).toBeLessThan(locked.audit_seq!);
      expect(failed.trust_domain).toBe('example.org');
      // Every certificate the lock revoked is announced once, the current one among them.
      const revoked = evs.filter((e) => e.type === 'certificate_revoked' && e.instance_id === id);
      const serials = revoked.map((e) => e.data['serial']);
      expect(serials).toContain(serial);
      expect(new Set(serials).size, sink).toBe(serials.length);
    }
    // The same facts (ids) on both sinks; MQTT on the type's topic; webhooks as application/jose.
    expect(followed(hookEvents(), id).map((e) => e.id)).toEqual(
      followed(
        mqttEvents().map((m) => m.ev),
        id,
      ).map((e) => e.id),
    );
    for (const m of mqttEvents().filter((x) => x.ev.instance_id === id))
      expect(m.topic).toBe(`sigil/v1/events/${m.ev.type}`);
    expect(hookContentTypes.every((t) => t === 'application/jose')).toBe(true);
  }, 120_000);

  it('the instance is locked (ctl instances show), with the attestation and its PCR diff', async () => {
    const shown = await sigilJson(['ctl', '--data-dir', dataDir, 'instances', 'show', id]);
    expect(shown.locked).toBe(true);
    expect(shown.lock_reason).toMatch(/attestation failed \(pcr_mismatch\)/);
    expect(shown.attestation).toMatchObject({
      result: 'refused',
      via: 'renew',
      check: 'pcr_mismatch',
      pcr_diff: [{ bank: 'sha256', pcr: 16, expected: [ZERO] }],
    });
    // Restored PCR, but locked: a person decides.
    expect((await sigil(['agent', 'renew', '--config', config])).stderr).toMatch(/instance_locked/);
  }, 60_000);

  it('the CRL lists the current certificate, and the crlfile broker refuses the agent’s certificate (accepting another)', async () => {
    const crl = await servedCrl('crl-locked.pem');
    expect(crl.serials).toContain(currentSerial());
    const v = await brokerVerdicts('broker-locked', crl.file);
    expect(v.agent.accepted, v.agent.out).toBe(false);
    // mosquitto's OpenSSL names why: TLS alert 44, certificate_revoked (RFC 5246 §7.2).
    expect(v.agent.out).toMatch(/alert certificate revoked/);
    expect(v.healthy.accepted, `${v.healthy.out}\n--- broker ---\n${v.log}`).toBe(true);
  }, 120_000);

  it('sigil ctl unlock is pushed as instance_unlocked on both; the agent renews again', async () => {
    await sigilJson(['ctl', '--data-dir', dataDir, 'unlock', id]);
    const unlockedOn = (evs: SigilEvent[]): boolean => followed(evs, id).some((e) => e.type === 'instance_unlocked');
    await waitFor('instance_unlocked on the webhook', () => unlockedOn(hookEvents()), 30_000);
    await waitFor('instance_unlocked on MQTT', () => unlockedOn(mqttEvents().map((m) => m.ev)), 30_000);
    for (const evs of [hookEvents(), mqttEvents().map((m) => m.ev)]) {
      const mine = followed(evs, id);
      expect(mine.map((e) => e.type)).toEqual(['attestation_failed', 'instance_locked', 'instance_unlocked']);
      expect(mine[2]!.data).toMatchObject({ by: 'admin' });
    }
    expect(await sigilJson(['agent', 'renew', '--config', config])).toMatchObject({ result: 'renewed' });
    expect((await servedCrl('crl-unlocked.pem')).serials).not.toContain(currentSerial());
  }, 120_000);
});
