/**
 * The issuer's shared context: CA material, the issuance engine, its own serving identity
 * (TLS + response signing), stores, join methods, metrics and the clock. Operations
 * (./ops/*.ts) take this object; transports (HTTPS now, MQTT later) only move bytes to them.
 */
import { RateLimiter } from './rate-limit.js';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { hostname } from 'node:os';
import { FirmwareProfiles } from '../attest/firmware/index.js';
import { createJoinMethods, type JoinMethods } from '../join/server-methods.js';
import { issueServerCert } from '../pki/ca.js';
import { CertificateIssuer } from '../pki/issue.js';
import { subjectNameDer } from '../pki/name.js';
import { PublicKeyCache } from '../pki/key-cache.js';
import { IssuedLeafMemo, type IssuingCa } from '../pki/own-leaf.js';
import { toPem } from '../pki/pem.js';
import { encodeJwsHeader } from '../protocol/jws.js';
import { TYP_RESPONSE } from '../protocol/messages.js';
import type { Logger } from '../util/log.js';
import { createCredentialAuthorities, type CredentialAuthorities } from './credentials/authorities.js';
import type { CaMaterial } from './data-dir.js';
import { createIssuerMetrics, type IssuerMetrics } from './metrics/issuer-metrics.js';
import { RefusalSampler, type RefusalSamplerOptions } from './audit/refusal-sampler.js';
import { checkpointVerifiers } from './audit/checkpoints.js';
import type { AdminAuditEnv } from './admin/ops.js';
import type { Stores } from './store/types.js';
import { AnswerSeal } from './ops/answer-seal.js';
import { StoredAnswerCodec } from './ops/stored-answer.js';
import { IntermediateRegistry } from './issuers/registry.js';

/** SPIFFE ID the issuer's own certificate carries; agents check it instead of a hostname. */
export const issuerSpiffeId = (trustDomain: string): string => `spiffe://${trustDomain}/sigil/issuer`;

export interface ServerIdentity {
  key: KeyObject;
  /** Leaf first, then the intermediate. */
  chainDer: Buffer[];
  certPem: string;
  keyPem: string;
  notAfter: number;
  /**
   * The protected header of every response this identity signs (ES256, TYP_RESPONSE, x5c =
   * chainDer), encoded once: it is part of the identity, so a rotation, which replaces the whole
   * object, replaces it with the new chain.
   */
  responseHeader: string;
}

export interface IssuerContext {
  ca: CaMaterial;
  engine: CertificateIssuer;
  server: ServerIdentity;
  stores: Stores;
  methods: JoinMethods;
  metrics: IssuerMetrics;
  log: Logger;
  now(): number;
  /** Allowed clock difference for request timestamps. */
  skewMs: number;
  /** Extra names for the serving certificate, kept for its rotation. */
  tlsSans: string[];
  /** The intermediate(s) renewals must be signed by, parsed once (pki/own-leaf.ts). */
  issuingCas: IssuingCa[];
  /** SSH user/host CAs and the JWT-SVID signer (the `credential` operation). */
  credentials: CredentialAuthorities;
  /**
   * The issuer URL published for OIDC discovery and put in JWT-SVIDs as `iss`
   * (`sigil server start --public-url`, default the listen URL). Set once listening.
   */
  publicUrl: string | undefined;
  /** Counts unauthenticated refusals so a flood becomes summary rows (ops/refusal.ts). */
  refusalSampler: RefusalSampler;
  /**
   * Interval attestations per instance (./ops/attest.ts): 6 at once, then one per 10 s. An agent
   * attests every minute at most (agent config attest_every ≥ 1m); an enrolled machine sending
   * failing evidence as fast as it can must not turn each into a judged quote, an audit row and
   * a pushed event (review of issue #16).
   */
  attestLimiter: RateLimiter;
  /** Checkpoint verifiers (the intermediate) and, once `server start` sets it, the checkpoint writer. */
  auditEnv: AdminAuditEnv;
  /** The firmware profiles tpm join rules name (attest/firmware); the tpm join holds the same object. */
  firmware: FirmwareProfiles;
  /**
   * Public keys imported once, by exact SPKI bytes (pki/key-cache.ts): a renewal's CSR key signs
   * the next renewal. Bounded; saves the import only, every signature is still verified.
   */
  publicKeys: PublicKeyCache;
  /**
   * Hashes of the leaves this issuer signed recently (pki/own-leaf.ts): a renewal presenting one
   * of them byte for byte needs no second signature check. Filled by ops/issue.ts only.
   */
  issuedLeaves: IssuedLeafMemo;
  /**
   * How answers are kept for idempotent replays: without the CA certificates every identity
   * answer repeats, put back byte for byte on replay (ops/stored-answer.ts).
   */
  storedAnswers: StoredAnswerCodec;
  /** Seals each stored answer against a database writer (ops/answer-seal.ts); checked before a replay. */
  answerSeal: AnswerSeal;
  /**
   * The other issuers' intermediates of the same root (issue #15; issuers/registry.ts): kept
   * current by issuers/runtime.ts, which also sets issuingCas and storedAnswers from it.
   */
  intermediates?: IntermediateRegistry;
}

/**
 * The issuer's own serving certificate lives 30 days; it is re-issued at every start and
 * rotated in place once a day (see rotateServerIdentity), so a long-running issuer never
 * serves an expired certificate.
 */
const SERVER_CERT_TTL_DAYS = 30;
export const SERVER_IDENTITY_ROTATE_MS = 24 * 3600_000;

export function createServerIdentity(
  ca: CaMaterial,
  engine: CertificateIssuer,
  extraSans: string[] = [],
): ServerIdentity {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ipRe = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-f:]+:[0-9a-f:]*)$/i;
  const names = ['localhost', hostname(), ...extraSans];
  const dnsNames = [...new Set(names.filter((n) => !ipRe.test(n)))];
  const ipAddresses = [...new Set(['127.0.0.1', '::1', ...names.filter((n) => ipRe.test(n))])];
  const certDer = issueServerCert(engine, {
    trustDomain: ca.trustDomain,
    dnsNames,
    ipAddresses,
    ttlDays: SERVER_CERT_TTL_DAYS,
    spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
  });
  const chainDer = [certDer, ca.intermediateDer];
  return {
    key: privateKey,
    chainDer,
    // The root is sent too, so an agent can match its pin on first contact (transport/https/client.ts).
    certPem:
      toPem('CERTIFICATE', certDer) + toPem('CERTIFICATE', ca.intermediateDer) + toPem('CERTIFICATE', ca.rootDer),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    notAfter: Date.now() + SERVER_CERT_TTL_DAYS * 86400_000,
    responseHeader: encodeJwsHeader('ES256', TYP_RESPONSE, chainDer),
  };
}

export function createIssuerContext(opts: {
  ca: CaMaterial;
  stores: Stores;
  log: Logger;
  tlsSans?: string[];
  now?: () => number;
  publicUrl?: string;
  refusalSampling?: RefusalSamplerOptions;
  firmwareProfilesDir?: string;
  /** The data directory's seal (answer-seal-file.ts); default: a random key that accepts only its own rows. */
  answerSeal?: AnswerSeal;
}): IssuerContext {
  const now = opts.now ?? Date.now;
  const engine = new CertificateIssuer({ caCertDer: opts.ca.intermediateDer, caKey: opts.ca.intermediateKey });
  // Firmware profiles: --firmware-profiles, else $SIGIL_FIRMWARE_PROFILES_DIR, else the install's.
  const firmware = new FirmwareProfiles(opts.firmwareProfilesDir);
  const methods = createJoinMethods({ log: opts.log, firmware });
  return {
    ca: opts.ca,
    engine,
    server: createServerIdentity(opts.ca, engine, opts.tlsSans),
    stores: opts.stores,
    methods,
    firmware,
    metrics: createIssuerMetrics(opts.stores, now),
    log: opts.log,
    now,
    skewMs: 5 * 60 * 1000,
    tlsSans: opts.tlsSans ?? [],
    issuingCas: [
      {
        certDer: opts.ca.intermediateDer,
        subjectDer: subjectNameDer(opts.ca.intermediateDer),
        publicKey: createPublicKey(opts.ca.intermediateKey),
      },
    ],
    credentials: createCredentialAuthorities(opts.ca.credentials, opts.ca.trustDomain),
    publicUrl: opts.publicUrl,
    refusalSampler: new RefusalSampler(opts.refusalSampling),
    attestLimiter: new RateLimiter({ ratePerS: 0.1, burst: 6, now }),
    auditEnv: {
      verify: { verifiers: checkpointVerifiers([opts.ca.intermediatePem, ...(opts.ca.keptIntermediatePems ?? [])]) },
    },
    publicKeys: new PublicKeyCache(),
    issuedLeaves: new IssuedLeafMemo(),
    // The exact strings ops/issue.ts puts in every identity answer (chain[1], bundle[0]).
    storedAnswers: new StoredAnswerCodec([opts.ca.intermediatePem.trim() + '\n', opts.ca.rootPem.trim() + '\n']),
    answerSeal: opts.answerSeal ?? AnswerSeal.ephemeral(),
    intermediates: new IntermediateRegistry({ ca: opts.ca, stores: opts.stores, log: opts.log, now }),
  };
}

/** Replace the serving identity (TLS + response signing); callers swap their TLS context. */
export function rotateServerIdentity(ctx: IssuerContext): ServerIdentity {
  ctx.server = createServerIdentity(ctx.ca, ctx.engine, ctx.tlsSans);
  return ctx.server;
}

/**
 * On a store shared by several issuers (PostgreSQL), run `onLockChange` when any issuer changes an
 * instance or bot lock, and on every resync of the change feed (store/postgres/change-feed.ts):
 * what this issuer derives from the audit log (the CRL, pushed events) then follows at once
 * instead of at its next look. Policy and bot-lock reads need nothing here: the store's own
 * cache is dropped by the same feed. SQLite has no feed: one process, nothing to hear about.
 */
export function watchStoreChanges(stores: Stores, onLockChange: () => Promise<void>, log: Logger): void {
  const feed = (stores as { changes?: { subscribe(fn: (event: string) => void): void } }).changes;
  feed?.subscribe((event) => {
    if (event === 'resources') return;
    onLockChange().catch((err: unknown) => log.warn({ err }, 'looking at the audit log after a change failed'));
  });
}
