/** Shared sample data for the store conformance suites. */
import type { NewInstance } from '../../../../src/server/store/types.js';
import type { CertificateRecord } from '../../../../src/server/store/types.js';

export const T0 = 1_700_000_000_000;
export const MIN = 60_000;

export type { NewInstance };
export type NewCertificate = CertificateRecord;

export function instance(id: string, over: Partial<NewInstance> = {}): NewInstance {
  return {
    id,
    bot: 'edge',
    joinMethod: 'token',
    spiffeId: `spiffe://example.org/bot/edge/${id}`,
    generation: 0,
    facts: { token_hash_prefix: 'abc' },
    keyStorage: 'software',
    exportable: true,
    createdAt: T0,
    ...over,
  };
}

export function cert(serial: string, instanceId: string, over: Partial<NewCertificate> = {}): NewCertificate {
  return {
    serial,
    instanceId,
    bot: 'edge',
    generation: 1,
    notBefore: T0,
    notAfter: T0 + 60 * MIN,
    kind: 'x509-svid',
    keyStorage: 'software' as const,
    exportable: true,
    spkiHash: 'sha256:' + 'ab'.repeat(32),
    requestId: `req-${serial}`,
    issuedAt: T0,
    ...over,
  };
}

/** A promise and the function that settles it: to hold a transaction open at a chosen point. */
export function gate(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/** Give other pending work a turn (a macrotask), so concurrent transactions really interleave. */
export const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
