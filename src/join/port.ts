/**
 * What a join method may touch on the issuer: a narrow port built by the host
 * (server/ops/join-port.ts) for one method and one join, never the whole store. A method reads
 * through {@link JoinAttestPort} while it checks evidence, and writes only through
 * {@link JoinCommitPort}, which exists only inside the issuing transaction.
 *
 * Every method is async, so a store that answers over the network (PostgreSQL) fits without
 * touching a method: the host awaits `Attested.commit` inside `withWriteTx`, and the commit
 * port works on that transaction's stores. A commit calls nothing but this port (no network,
 * no metrics: on PostgreSQL the transaction, and so `commit`, may run more than once).
 *
 * The record types are the store's, re-exported: the port is the one place a method sees them.
 */
import type { Logger } from '../util/log.js';
import type { DeviceRecord, JoinTokenRecord, KeyBindingRecord } from '../server/store/types.js';

export type { DeviceRecord, JoinTokenRecord, KeyBindingRecord };

/** A join rule of this method, its block parsed with the method's rule schema. */
export interface JoinRule<T> {
  name: string;
  bot: string;
  config: T;
}

export interface JoinAttestPort {
  /** This method's join rules (parsed with its rule schema), in name order: deterministic matching. */
  rules<T>(): Promise<Array<JoinRule<T>>>;
  /** Join tokens (token): read-only, for an early precise refusal; `commit` decides. */
  token(id: string): Promise<JoinTokenRecord | undefined>;
  /** Whether a signed token's (issuer, jti) was already used for a join (jwt-based methods). */
  jtiSeen(issuer: string, jti: string): Promise<boolean>;
  /** A device registered from a factory manifest, by its certificate fingerprint (x509 registered_only). */
  device(fingerprint: string): Promise<DeviceRecord | undefined>;
  /** This method's key binding of `subject` (aws_iid: the first join binds the instance to a key). */
  keyBinding(subject: string): Promise<KeyBindingRecord | undefined>;
  /** The facts recorded on a known instance (tpm: the clock of its last join), undefined when new. */
  instanceFacts(instanceId: string): Promise<Record<string, unknown> | undefined>;
  now(): number;
  readonly log: Logger;
}

/**
 * What a method's renewal re-check (`JoinMethodServer.checkRenewal`) may read: its own rules as
 * they are now, inside the renewal's transaction. Read-only: a renewal re-check decides, it
 * records nothing (the refusal is audited by the host).
 */
export interface JoinRenewPort {
  /** This method's join rules, parsed with its rule schema, in name order. */
  rules<T>(): Promise<Array<JoinRule<T>>>;
  /** The renewal's arrival on the issuer's clock. */
  readonly now: number;
}

/** Inside the issuing transaction: the single-use decisions, each one conditional write. */
export interface JoinCommitPort {
  readonly now: number;
  /** The instance being created or joined again. */
  readonly instanceId: string;
  /** Use a join token up; `token_reused`/`token_expired`/`token_invalid` when another join won. */
  consumeToken(
    id: string,
  ): Promise<{ ok: true } | { ok: false; reason: 'token_invalid' | 'token_expired' | 'token_reused' }>;
  /** Record a token's (issuer, jti) until `expiresAt`; false when it was already recorded (the replay). */
  recordJti(issuer: string, jti: string, expiresAt: number): Promise<boolean>;
  /** Bind `subject` to `keyHash` for this method if unbound; returns the binding in force, which the caller compares. */
  bindKey(rec: {
    subject: string;
    keyHash: string;
    rule: string;
    facts: Record<string, unknown>;
  }): Promise<KeyBindingRecord>;
}
