/**
 * The MQTT e2e fixture most files share (vitest hooks, so apart from mosquitto.ts, which the
 * benches import too): a temp dir, a broker, an initialised issuer data dir and one issuer.
 */
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { tempDir, type RunningIssuer } from './cli.js';
import { startMqttIssuerRig, type Broker, type IssuerProcess } from './mosquitto.js';

/** The rig of one describe block: its temp dir and issuer data dir, and what beforeAll started. */
export interface MqttIssuerFixture {
  tmp: { path: string; cleanup(): void };
  dataDir: string;
  /** For `createToken` and other local admin calls on the data dir. */
  admin: RunningIssuer;
  broker: Broker;
  pin: string;
  /** Tests may stop it (undefined) and start another on the same data dir. */
  issuer: IssuerProcess | undefined;
}

/**
 * Register beforeAll/afterAll for a {@link startMqttIssuerRig} in the calling describe block;
 * the broker, pin and issuer fields are set once beforeAll ran. afterAll stops what is running
 * and removes the temp dir.
 */
export function useMqttIssuerRig(prefix: string): MqttIssuerFixture {
  const tmp = tempDir(prefix);
  const dataDir = join(tmp.path, 'issuer');
  const rig = { tmp, dataDir, admin: { dataDir } as RunningIssuer, issuer: undefined } as MqttIssuerFixture;
  beforeAll(async () => void Object.assign(rig, await startMqttIssuerRig(tmp.path, dataDir)));
  afterAll(async () => {
    await rig.issuer?.stop();
    await rig.broker?.stop();
    tmp.cleanup();
  });
  return rig;
}
