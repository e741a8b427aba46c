/**
 * Sign one granted credential and describe its record. Pure: the caller (ops/credential.ts)
 * inserts the record with the idempotent response and the audit row in one transaction. Every kind starts `BACKDATE_MS` in the past, like SVIDs, for verifiers whose
 * clock lags a little.
 *
 *   ssh_user / ssh_host   OpenSSH certificate by the user / host CA; key id = SPIFFE ID
 *   database / kubernetes X.509 client certificate by the issuing intermediate, no SPIFFE ID
 *   jwt                   JWT-SVID, ES256, iss = the public issuer URL
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import { SigilError } from '../../errors.js';
import type { CredentialKind, CredentialRequest, CredentialResult } from '../../protocol/credential-messages.js';
import { parseCsr } from '../../pki/csr.js';
import { toPem } from '../../pki/pem.js';
import type { NameAttribute } from '../../pki/name.js';
import { randomSerial, serialHex } from '../../pki/serial.js';
import { classifySpki, readSpki } from '../../pki/spki.js';
import { formatCertificateLine } from '../../ssh/certificate.js';
import { parseAuthorizedKey } from '../../ssh/public-key.js';
import type { IssuerContext } from '../issuer.js';
import { jwtSigner, keysChangedAt, publishedSshCaLines, sshSigner, type CredentialAuthorities } from './authorities.js';
import type { CredentialGrant } from '../policy/credentials.js';
import type { CertificateRecord, InstanceRecord } from '../store/types.js';
import { BACKDATE_MS, RENEW_FRACTION, spiffeIdFor, spkiHash } from '../ops/issue.js';

/** The `kind` column of the certificates table per credential kind. */
export const RECORD_KIND: Record<CredentialKind, string> = {
  ssh_user: 'ssh-user',
  ssh_host: 'ssh-host',
  database: 'x509-database',
  kubernetes: 'x509-kubernetes',
  jwt: 'jwt-svid',
};

export interface IssueCredentialParams {
  grant: CredentialGrant;
  req: CredentialRequest;
  inst: InstanceRecord;
  now: number;
}

interface Signed {
  serial: string;
  /** What the record's spki_hash column holds for this kind. */
  keyHash: string;
  fields: Partial<CredentialResult>;
}

function needKey(req: CredentialRequest): string {
  if (!req.public_key) throw new SigilError('bad_request', `a ${req.kind} credential request must carry public_key`);
  return req.public_key;
}

function randomSshSerial(): bigint {
  const v = randomBytes(8).readBigUInt64BE();
  return v === 0n ? 1n : v;
}

function signSsh(
  ctx: IssuerContext,
  p: IssueCredentialParams,
  spiffeId: string,
  notBefore: number,
  notAfter: number,
): Signed {
  const subject = parseAuthorizedKey(needKey(p.req), 'unsupported_key', 'public_key');
  const cas = ctx.credentials;
  const ca = sshSigner(cas, p.grant.kind === 'ssh_user' ? 'user' : 'host');
  const serial = randomSshSerial();
  const blob = ca.issue({
    subject,
    serial,
    keyId: spiffeId,
    principals: p.grant.principals!,
    validAfter: new Date(notBefore),
    validBefore: new Date(notAfter),
    ...(p.grant.kind === 'ssh_user' ? { extensions: p.grant.extensions ?? [] } : {}),
  });
  return {
    serial: serial.toString(16),
    keyHash: spkiHash(subject.blob),
    fields: {
      certificate: formatCertificateLine(blob, spiffeId),
      principals: p.grant.principals!,
      user_ca_public_key: cas.sshUser.authorizedKeyLine(),
      host_ca_public_key: cas.sshHost.authorizedKeyLine(),
      // The CA keys of a rotation in progress (`sigil server rotate-key`): a staged one (trusted
      // before it signs) and retired ones whose certificates still live (≤ 24 h). The trust
      // files the agent writes list them too.
      ...otherCaFields(cas, ctx.now()),
    },
  };
}

function otherCaFields(
  cas: CredentialAuthorities,
  now: number,
): { other_user_ca_public_keys?: string[]; other_host_ca_public_keys?: string[] } {
  const user = publishedSshCaLines(cas, 'user', now).slice(1);
  const host = publishedSshCaLines(cas, 'host', now).slice(1);
  return {
    ...(user.length > 0 ? { other_user_ca_public_keys: user } : {}),
    ...(host.length > 0 ? { other_host_ca_public_keys: host } : {}),
  };
}

function signClientCert(ctx: IssuerContext, p: IssueCredentialParams, notBefore: number, notAfter: number): Signed {
  // Proof of possession: the CSR's self-signature verifies with the key to be certified.
  if (!p.req.csr)
    throw new SigilError(
      'bad_request',
      `a ${p.req.kind} credential request must carry csr (a PKCS#10 request signed by the key)`,
    );
  const spkiDer = parseCsr(p.req.csr).spkiDer;
  const c = classifySpki(readSpki(spkiDer, 'unsupported_key', 'csr public key'));
  if ('reason' in c) throw new SigilError('unsupported_key', `csr public key: ${c.reason}`);
  checkKeyMaterial(spkiDer);
  const cn = p.grant.kind === 'database' ? p.grant.dbUser! : p.grant.kubernetesUser!;
  const orgs = p.grant.kind === 'kubernetes' ? (p.grant.kubernetesGroups ?? []) : [];
  // Kubernetes reads every O as a group and the CN as the user name (kubeadm writes O first).
  const subject: Array<readonly [NameAttribute, string]> = [...orgs.map((o) => ['O', o] as const), ['CN', cn] as const];
  const serial = randomSerial();
  let der: Buffer;
  try {
    der = ctx.engine.issueClientCert({
      serial,
      spkiDer,
      subject,
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
    });
  } catch (e) {
    if (e instanceof SigilError) throw e;
    throw new SigilError('internal', 'client certificate signing failed', { cause: e });
  }
  return {
    serial: serialHex(serial),
    keyHash: spkiHash(spkiDer),
    fields: {
      chain: [toPem('CERTIFICATE', der), ctx.ca.intermediatePem.trim() + '\n'],
      bundle: [ctx.ca.rootPem.trim() + '\n'],
      common_name: cn,
      organizations: orgs,
    },
  };
}

/** The key must really be a key (an EC point on its curve), and RSA at least 2048 bits. */
function checkKeyMaterial(spkiDer: Buffer): void {
  let bits: number | undefined;
  try {
    bits = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength;
  } catch {
    throw new SigilError('unsupported_key', 'public_key: the key is not valid');
  }
  if (bits !== undefined && bits < 2048)
    throw new SigilError('unsupported_key', `public_key: RSA keys must have at least 2048 bits (got ${bits})`);
}

function signJwt(
  ctx: IssuerContext,
  p: IssueCredentialParams,
  spiffeId: string,
  notBefore: number,
  notAfter: number,
): Signed {
  if (!ctx.publicUrl)
    throw new SigilError(
      'unavailable',
      'this issuer has no public URL configured yet, so it cannot issue JWT-SVIDs (sigil server start --public-url)',
    );
  const jti = randomBytes(16).toString('hex');
  const audiences = p.grant.audiences!;
  const signer = jwtSigner(ctx.credentials);
  const token = signer.sign({
    iss: ctx.publicUrl,
    sub: spiffeId,
    aud: audiences.length === 1 ? audiences[0]! : audiences,
    iat: Math.floor(p.now / 1000),
    nbf: Math.floor(notBefore / 1000),
    exp: Math.floor(notAfter / 1000),
    jti,
    sigil_bot: p.inst.bot,
    sigil_instance: p.inst.id,
  });
  return {
    serial: jti,
    keyHash: `kid:${signer.kid}`,
    fields: { token, audiences, issuer_url: ctx.publicUrl },
  };
}

export function issueCredential(
  ctx: IssuerContext,
  p: IssueCredentialParams,
): { result: CredentialResult; record: CertificateRecord } {
  const { grant, inst, now } = p;
  const spiffeId = spiffeIdFor(ctx.ca.trustDomain, inst.bot, inst.id);
  const notBefore = now - BACKDATE_MS;
  const notAfter = now + grant.ttl.ttlS * 1000;
  const signed =
    grant.kind === 'ssh_user' || grant.kind === 'ssh_host'
      ? signSsh(ctx, p, spiffeId, notBefore, notAfter)
      : grant.kind === 'jwt'
        ? signJwt(ctx, p, spiffeId, notBefore, notAfter)
        : signClientCert(ctx, p, notBefore, notAfter);
  const result: CredentialResult = {
    kind: grant.kind,
    serial: signed.serial,
    role: grant.role,
    spiffe_id: spiffeId,
    not_before: notBefore,
    not_after: notAfter,
    ttl_s: grant.ttl.ttlS,
    requested_ttl_s: grant.ttl.requestedS,
    ttl_clamped: grant.ttl.clamped,
    renew_after: now + Math.round(grant.ttl.ttlS * 1000 * RENEW_FRACTION),
    ...signed.fields,
  };
  // Which key set this answer's trust lines (ssh) or signing key (jwt) come from: an agent that
  // knows a later rotation does not take it from an issuer still behind (agent/credentials.ts).
  if (grant.kind === 'ssh_user' || grant.kind === 'ssh_host' || grant.kind === 'jwt') {
    const sequence = keysChangedAt(ctx.credentials, now);
    if (sequence > 0) result.trust_sequence = sequence;
  }
  const record: CertificateRecord = {
    serial: signed.serial,
    instanceId: inst.id,
    bot: inst.bot,
    generation: inst.generation,
    notBefore,
    notAfter,
    kind: RECORD_KIND[grant.kind],
    // Output keys are made by the agent for workloads; nothing proves where they live.
    keyStorage: 'software',
    exportable: true,
    spkiHash: signed.keyHash,
    requestId: p.req.request_id,
    issuedAt: now,
  };
  return { result, record };
}
