/**
 * Every join method the issuer knows, one line per method. Each entry brings its descriptor,
 * its join_rule schema and a factory; {@link createJoinMethods} builds one issuer's methods with
 * that issuer's caches (join/caches.ts), and {@link JOIN_RULE_SCHEMAS} is what `sigil ctl apply`
 * validates join rules with, even without a running issuer. Nothing registers itself on import.
 */
import type { z } from 'zod';
import { FirmwareProfiles } from '../attest/firmware/index.js';
import type { ParsedCsr } from '../pki/csr.js';
import { awsIidServerMethod } from './aws-iid/server.js';
import { azureServerMethod } from './azure/server.js';
import { createJoinCaches } from './caches.js';
import { gcpServerMethod } from './gcp/server.js';
import { oidcServerMethod } from './oidc/server.js';
import type { JoinMethodDeps, ServerJoinMethodEntry } from './registry.js';
import { parseRules, validateRuleBlock, type RuleSchemas } from './rules.js';
import { tokenServerMethod } from './token/server.js';
import { tpmServerMethod } from './tpm/server.js';
import { SigilError } from '../errors.js';
import type { JoinRenewPort } from './port.js';
import type { AttestationPolicy, JoinMethodServer, ReattestInput, ReattestVerdict } from './types.js';
import { x509ServerMethod } from './x509/server.js';

export const SERVER_JOIN_METHODS: readonly ServerJoinMethodEntry[] = Object.freeze([
  tokenServerMethod,
  x509ServerMethod,
  awsIidServerMethod,
  gcpServerMethod,
  azureServerMethod,
  oidcServerMethod,
  tpmServerMethod,
]);

/** The join_rule block schema of each method that takes rules. */
export function ruleSchemasOf(entries: readonly ServerJoinMethodEntry[]): RuleSchemas {
  return new Map(
    entries.flatMap((e): Array<[string, z.ZodType]> => (e.ruleSchema ? [[e.descriptor.name, e.ruleSchema]] : [])),
  );
}

export const JOIN_RULE_SCHEMAS: RuleSchemas = ruleSchemasOf(SERVER_JOIN_METHODS);

/** Validate a join_rule spec against the known methods (`sigil ctl apply`); returns its parsed block. */
export function validateJoinRule(ruleName: string, spec: Record<string, unknown>): unknown {
  return validateRuleBlock(JOIN_RULE_SCHEMAS, ruleName, spec);
}

/** One issuer's method, built. */
export interface BuiltJoinMethod {
  readonly entry: ServerJoinMethodEntry;
  readonly server: JoinMethodServer;
}

/**
 * One issuer's join methods and the join side's per-issuer state: the caches the methods share
 * and the parsed CSRs of joins in a challenge round (server/ops/join.ts).
 */
export class JoinMethods {
  readonly #byName: ReadonlyMap<string, BuiltJoinMethod>;
  /** Host-side memo of parsed join CSRs, keyed by the exact CSR text (server/ops/join.ts). */
  readonly recentCsrs = new Map<string, ParsedCsr>();

  constructor(entries: readonly ServerJoinMethodEntry[], deps: JoinMethodDeps) {
    this.#byName = new Map(entries.map((e) => [e.descriptor.name, { entry: e, server: e.create(deps) }]));
  }

  get(name: string): BuiltJoinMethod | undefined {
    return this.#byName.get(name);
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  names(): string[] {
    return [...this.#byName.keys()];
  }

  /**
   * A renewal's re-check by the instance's join method (its `checkRenewal` capability; nothing
   * for a method without one, or one this issuer does not have). `tx`: the renewal's transaction.
   */
  async checkRenewal(
    method: string,
    facts: Record<string, unknown>,
    tx: {
      resources: { list(kind: 'join_rule'): Promise<ReadonlyArray<{ name: string; spec: Record<string, unknown> }>> };
    },
    now: number,
  ): Promise<void> {
    const built = this.#byName.get(method);
    if (!built?.server.checkRenewal) return;
    await built.server.checkRenewal(facts, {
      now,
      rules: async <T>() => parseRules<T>(await tx.resources.list('join_rule'), method, built.entry.ruleSchema),
    });
  }

  /**
   * Continuous attestation (issue #16): the instance's join-rule policy when its method has the
   * `reattest` capability and the instance must attest; undefined otherwise.
   */
  async attestationPolicy(
    method: string,
    facts: Record<string, unknown>,
    tx: RuleReader,
    now: number,
  ): Promise<AttestationPolicy | undefined> {
    const built = this.#byName.get(method);
    if (!built?.server.attestationPolicy) return undefined;
    return built.server.attestationPolicy(facts, this.#renewPort(built, tx, now));
  }

  /** Judge fresh evidence with the instance's method (its `reattest` capability). */
  async reattest(method: string, input: ReattestInput, tx: RuleReader): Promise<ReattestVerdict> {
    const built = this.#byName.get(method);
    if (!built?.server.reattest)
      throw new SigilError('bad_request', `instances joined with the ${method} method cannot attest after the join`);
    return built.server.reattest(input, this.#renewPort(built, tx, input.now));
  }

  #renewPort(built: BuiltJoinMethod, tx: RuleReader, now: number): JoinRenewPort {
    const method = built.entry.descriptor.name;
    return {
      now,
      rules: async <T>() => parseRules<T>(await tx.resources.list('join_rule'), method, built.entry.ruleSchema),
    };
  }
}

/** What a renewal-time call reads of the transaction: the join rules. */
type RuleReader = {
  resources: { list(kind: 'join_rule'): Promise<ReadonlyArray<{ name: string; spec: Record<string, unknown> }>> };
};

/** The issuer's methods: `entries` (default: all) built with fresh per-issuer caches. */
export function createJoinMethods(
  deps: Omit<JoinMethodDeps, 'caches' | 'firmware'> & Partial<Pick<JoinMethodDeps, 'caches' | 'firmware'>>,
  entries: readonly ServerJoinMethodEntry[] = SERVER_JOIN_METHODS,
): JoinMethods {
  return new JoinMethods(entries, {
    caches: deps.caches ?? createJoinCaches(),
    log: deps.log,
    firmware: deps.firmware ?? new FirmwareProfiles(),
  });
}
