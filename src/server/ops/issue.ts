/**
 * Issue one X.509-SVID and record it — and, when the agent asked for one, its MQTT transport
 * certificate (./transport-cert.ts) with the same subject and validity. Runs inside the caller's
 * store transaction (`tx`): the certificate rows, the instance's new generation, the idempotent
 * response and the audit row commit together or not at all.
 */
import { hash } from 'node:crypto';
import { SigilError } from '../../errors.js';
import type { IdentityResult } from '../../protocol/messages.js';
import type { NameAttribute, NameSpec } from '../../pki/name.js';
import { toPem } from '../../pki/pem.js';
import { serialHex, timeOrderedSerial } from '../../pki/serial.js';
import type { KeyStorage } from '../../keystore/signer.js';
import { decideTtl } from '../policy/ttl.js';
import type { BotPolicy } from '../policy/resources.js';
import type { IssuerContext } from '../issuer.js';
import type { TxStores } from '../store/types.js';
import { signTransportCert, transportCertRecord } from './transport-cert.js';
import { keysChangedAt } from '../credentials/authorities.js';

/** NotBefore is back-dated so a verifier whose clock lags a little still accepts the cert. */
export const BACKDATE_MS = 60_000;
/** The issuer's renewal hint: half the lifetime (the agent adds ±10% jitter). */
export const RENEW_FRACTION = 0.5;

export const spiffeIdFor = (trustDomain: string, bot: string, instanceId: string): string =>
  `spiffe://${trustDomain}/bot/${bot}/${instanceId}`;

export function spkiHash(spkiDer: Buffer): string {
  // One-shot: no Hash object for the GC to free (issue #14; pki/own-leaf.ts).
  return 'sha256:' + hash('sha256', spkiDer, 'hex');
}

export interface IssueParams {
  op: 'join' | 'renew';
  requestId: string;
  instanceId: string;
  bot: BotPolicy;
  spkiDer: Buffer;
  requestedTtlS: number | undefined;
  generation: number;
  keyStorage: KeyStorage;
  exportable: boolean;
  /** SPKI of a checked `transport_csr` (transport-cert.ts checkTransportCsr): issue a transport certificate too. */
  transportSpkiDer?: Buffer;
  /**
   * Facts to merge into the instance's by the same update that records the issue (store
   * `recordIssue` mergeFacts): a renewal's attestation record and carrier/agent version, one
   * UPDATE of the row instead of one per change (issue #16).
   */
  mergeFacts?: Record<string, unknown>;
}

export interface IssuedIdentity {
  result: IdentityResult;
  /** Serial of the transport certificate issued with it, for the audit row. */
  transportSerial?: string;
}

/**
 * The SVID subject: O=<trust domain>, CN=<instance id>. The SPIFFE ID (URI SAN) stays the
 * identity; the CN is there for brokers that take the client certificate's CN as the username
 * (mosquitto `use_identity_as_username`), so ACL patterns such as `sigil/v1/resp/%u` confine an
 * instance to its own response topic (docs/mqtt.md). RFC 5280 caps both at 64 characters
 * (ub-common-name, ub-organization-name); a longer value is left out rather than truncated, since
 * a truncated CN would name a different instance.
 */
export function svidSubject(trustDomain: string, instanceId: string): NameSpec {
  const subject: Array<readonly [NameAttribute, string]> = [];
  if ([...trustDomain].length <= 64) subject.push(['O', trustDomain]);
  if ([...instanceId].length <= 64) subject.push(['CN', instanceId]);
  return subject;
}

export async function issueIdentity(ctx: IssuerContext, tx: TxStores, p: IssueParams): Promise<IssuedIdentity> {
  const now = ctx.now();
  const ttl = decideTtl(p.requestedTtlS, p.bot.maxTtlS);
  const spiffeId = spiffeIdFor(ctx.ca.trustDomain, p.bot.name, p.instanceId);
  // Time-ordered: the certificate index is appended to, not written at a random page (issue #14).
  const serial = timeOrderedSerial(now);
  const notBefore = now - BACKDATE_MS;
  const notAfter = now + ttl.ttlS * 1000;
  const subject = svidSubject(ctx.ca.trustDomain, p.instanceId);
  let der: Buffer;
  try {
    der = ctx.engine.issueSvid({
      serial,
      spkiDer: p.spkiDer,
      spiffeId,
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      subject,
    });
  } catch (e) {
    throw new SigilError('internal', 'certificate signing failed', { cause: e });
  }
  // These exact bytes carry the intermediate's signature: the renewal that presents them next
  // can match them instead of verifying it again (pki/own-leaf.ts IssuedLeafMemo).
  ctx.issuedLeaves.remember(der, ctx.ca.intermediateDer);
  const serialStr = serialHex(serial);
  const record = {
    instanceId: p.instanceId,
    bot: p.bot.name,
    generation: p.generation,
    notBefore,
    notAfter,
    requestId: p.requestId,
    issuedAt: now,
  };
  await tx.certificates.insert({
    ...record,
    serial: serialStr,
    kind: 'x509-svid',
    keyStorage: p.keyStorage,
    exportable: p.exportable,
    spkiHash: spkiHash(p.spkiDer),
  });
  let transport: { serial: string; chain: string[] } | undefined;
  if (p.transportSpkiDer) {
    transport = signTransportCert(ctx, { spkiDer: p.transportSpkiDer, subject, notBefore, notAfter });
    await tx.certificates.insert(
      transportCertRecord({ ...record, serial: transport.serial, spkiHash: spkiHash(p.transportSpkiDer) }),
    );
  }
  await tx.instances.recordIssue(p.instanceId, {
    generation: p.generation,
    serial: serialStr,
    notAfter,
    keyStorage: p.keyStorage,
    exportable: p.exportable,
    now,
    ...(p.mergeFacts ? { mergeFacts: p.mergeFacts } : {}),
  });
  const result: IdentityResult = {
    instance_id: p.instanceId,
    spiffe_id: spiffeId,
    bot: p.bot.name,
    generation: p.generation,
    serial: serialStr,
    chain: [toPem('CERTIFICATE', der), ctx.ca.intermediatePem.trim() + '\n'],
    bundle: [ctx.ca.rootPem.trim() + '\n'],
    not_before: notBefore,
    not_after: notAfter,
    ttl_s: ttl.ttlS,
    requested_ttl_s: ttl.requestedS,
    ttl_clamped: ttl.clamped,
    renew_after: now + Math.round(ttl.ttlS * 1000 * RENEW_FRACTION),
    key_storage: p.keyStorage,
    exportable: p.exportable,
    ...(transport ? { transport_chain: transport.chain } : {}),
  };
  // Absent until the issuer first rotates a key: answers of an issuer that never did are unchanged.
  const trustSequence = keysChangedAt(ctx.credentials, now);
  if (trustSequence > 0) result.trust_sequence = trustSequence;
  return transport ? { result, transportSerial: transport.serial } : { result };
}
