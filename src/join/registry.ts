/**
 * The join-method registry's shapes. Each method folder `join/<m>/` exports one
 * {@link JoinMethodDescriptor} (descriptor.ts: what both sides need to know) and, on each side,
 * one entry that builds the method: {@link AgentJoinMethodEntry} (agent side, importable without
 * any server code) and {@link ServerJoinMethodEntry} (issuer side). The lists are
 * join/agent-methods.ts and join/server-methods.ts, one line per method; nothing registers itself
 * on import. docs/adding-a-join-method.md walks through a new method.
 */
import type { z } from 'zod';
import type * as core from 'zod/v4/core';
import type { ErrorCode } from '../errors.js';
import type { Signer } from '../keystore/signer.js';
import type { TpmAccesses } from '../keystore/tpm-access.js';
import type { Logger } from '../util/log.js';
import type { FirmwareProfiles } from '../attest/firmware/index.js';
import type { JoinCaches } from './caches.js';
import type { JoinMethodAgent, JoinMethodServer } from './types.js';

export interface JoinMethodCapabilities {
  /**
   * The agent can join again by itself after its identity expired (tpm, x509, cloud methods).
   * False (token): a person must hand it a new credential (`reattest_required`).
   */
  readonly canReattest: boolean;
  /** The evidence is a single-use credential the agent can fingerprint (token). */
  readonly singleUseCredential?: boolean;
  /** Renewals prove where the new key lives (tpm: TPM2_Certify by the join's attestation key). */
  readonly renewalKeyProof?: boolean;
  /** The join has a challenge round (the host opens, binds and uses up the challenge). */
  readonly challengeRound?: boolean;
  /**
   * Renewals and interval attestations carry fresh boot-state evidence the method judges again
   * (tpm: a quote by the join's AK; issue #16, server/ops/attestation.ts).
   */
  readonly reattest?: boolean;
}

/** What both sides know about a method. Plain data: no server or agent code. */
export interface JoinMethodDescriptor {
  /** `join.method` in agent.yaml, `method:` of a join_rule, `method` of a join request. */
  readonly name: string;
  /** Keys of the agent's `join.<name>:` block that name files (resolved against agent.yaml's directory). */
  readonly pathKeys: readonly string[];
  /** The error codes this method adds to src/errors.ts (documentation and a test keep them honest). */
  readonly errorCodes: readonly ErrorCode[];
  readonly capabilities: JoinMethodCapabilities;
}

// ------------------------------------------------------------------------------------ agent side

/** The agent's settings store, as much of it as a method may use (agent/state). */
export interface AgentSettings {
  getSetting(key: string): string | undefined;
  setSetting(key: string, value: string): void;
}

export interface AgentMethodContext {
  /** `agent.yaml: join.<m>`, for messages. */
  where: string;
  dataDir: string;
  keyStorage: 'software' | 'tpm' | 'pkcs11';
  /** The agent's TPMs, one access per TCTI, shared with its identity keys (keystore/tpm-access.ts). */
  tpm: TpmAccesses;
}

/** What {@link AgentJoinMethod.renewalProofs} makes: the renew request's `key_attestation` and `attestation`. */
export interface RenewalProofs {
  keyProof?: Record<string, unknown> | undefined;
  evidence?: Record<string, unknown> | undefined;
}

/** A method built for the agent: its evidence half plus the hooks the agent core calls. */
export interface AgentJoinMethod {
  method: JoinMethodAgent;
  /** Identifies a single-use credential (token id); undefined for methods that can re-attest. */
  singleUseCredential: string | undefined;
  /** Every identity key the agent makes (tpm: the join certifies the key, so it must find it by its SPKI). */
  onKeyCreated?(key: Signer): void;
  /** After a join committed (tpm: keep this join's attestation key for renewals). */
  onJoined?(requestId: string, settings: AgentSettings): void;
  /** Evidence that a renewal's new key is where the join put it (tpm: TPM2_Certify); undefined: none. */
  renewalKeyProof?(
    key: Signer,
    requestId: string,
    settings: AgentSettings,
  ): Promise<Record<string, unknown> | undefined>;
  /**
   * Fresh boot-state evidence for a renewal or an interval attestation (issue #16; tpm: a quote by
   * the join's AK over the join's PCR selection with qualifyingData = `binding`, the PCR values,
   * the event log after a reboot). `binding`: server/ops/attestation.ts attestationBinding of the
   * request. Undefined: this instance needs none (its join rule names no firmware profile).
   */
  freshEvidence?(binding: Buffer, settings: AgentSettings): Promise<Record<string, unknown> | undefined>;
  /**
   * A renewal's {@link renewalKeyProof} and {@link freshEvidence} made together, where that is
   * cheaper (tpm: TPM2_Certify and the quote by the AK loaded once, on one TPM connection).
   * `binding`: the renewal's attestation binding (its request id and `key`'s SPKI). When present,
   * the agent uses it for renewals instead of the two; the interval `attest` keeps freshEvidence.
   */
  renewalProofs?(key: Signer, requestId: string, binding: Buffer, settings: AgentSettings): Promise<RenewalProofs>;
  /**
   * The request that carried the last {@link freshEvidence} succeeded (a renewal committed, an
   * interval attestation was accepted): tpm keeps that quote's clock counters as the issuer's, so
   * the next quote knows whether a reboot needs the event log.
   */
  onAttestationAccepted?(settings: AgentSettings): void;
}

/**
 * A method's registry entry: what the agent's config loader needs for every method (plain data
 * and a zod schema, cheap to import), and `load()` for the code that builds it. That code pulls
 * in heavy stacks (tpm: the TPM stack; x509: PKCS#11 and TPM keys; azure: PKCS#7), so the agent
 * imports it only for the method its agent.yaml names (issue #19: a gateway's memory and start).
 */
export interface AgentJoinMethodEntry<S = unknown> {
  readonly descriptor: JoinMethodDescriptor;
  /**
   * The schema of the agent's `join.<name>:` block, built per call: the config is parsed once,
   * and a schema kept resident would cost the daemon memory for nothing (issue #19).
   */
  configSchema(): core.$ZodType<S>;
  /**
   * Methods that certify a TPM-resident identity key (tpm): the TCTI of that TPM, from the
   * `join.<name>:` block as written. Such a method makes `key_storage: tpm` the default and the
   * only choice, and `key_storage: tpm` needs such a method (its TCTI names the TPM).
   */
  identityKeyTpm?(settings: Record<string, unknown>): string;
  /** The method's code (join/<m>/config.ts), imported on first call. */
  load(): Promise<AgentJoinMethodCode<S>>;
}

/** What `load()` brings: builds the method from its parsed `join.<name>:` block. */
export interface AgentJoinMethodCode<S = unknown> {
  create(settings: S, ctx: AgentMethodContext): AgentJoinMethod;
}

/** An entry whose code is loaded: what the agent builds its method from, synchronously. */
export type LoadedAgentJoinMethod<S = unknown> = AgentJoinMethodEntry<S> & AgentJoinMethodCode<S>;

// ----------------------------------------------------------------------------------- server side

/** What a server factory receives: per-issuer objects, never module state. */
export interface JoinMethodDeps {
  caches: JoinCaches;
  log: Logger;
  /** The issuer's firmware profiles (tpm: boot state; attest/firmware). */
  firmware: FirmwareProfiles;
}

export interface ServerJoinMethodEntry {
  readonly descriptor: JoinMethodDescriptor;
  /** The `<name>:` block of a join_rule; absent: the method takes no rules (token names its bot). */
  readonly ruleSchema?: z.ZodType;
  create(deps: JoinMethodDeps): JoinMethodServer;
}
