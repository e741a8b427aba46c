/** A stored agent identity for unit tests of agent state and what reads it; override what matters. */
import type { Identity } from '../../src/agent/state/index.js';

export function fakeIdentity(over: Partial<Identity> = {}): Identity {
  return {
    instanceId: 'inst-1',
    spiffeId: 'spiffe://example.org/bot/edge',
    bot: 'edge',
    chainPem: [
      '-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n',
      '-----BEGIN CERTIFICATE-----\nINT\n-----END CERTIFICATE-----\n',
    ],
    keyRef: JSON.stringify({ storage: 'software', pkcs8Pem: 'PEM' }),
    keyStorage: 'software',
    exportable: true,
    issuerKeyStorage: 'software',
    issuerExportable: true,
    serial: '01ab',
    notBefore: 1_700_000_000_000,
    notAfter: 1_700_003_600_000,
    generation: 1,
    joinMethod: 'token',
    issuedAt: 1_700_000_000_000,
    renewAfter: 1_700_001_800_000,
    ...over,
  };
}
