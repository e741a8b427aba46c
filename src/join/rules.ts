/**
 * Join rules: `kind: join_rule` resources binding a join method's evidence to a bot.
 *
 *   kind: join_rule
 *   name: racks
 *   spec: { method: tpm, bot: gw, tpm: { ... method-specific ... } }
 *
 * Each method that uses rules declares the schema of its block (its ServerJoinMethodEntry in
 * join/server-methods.ts), so `sigil ctl apply` refuses a malformed rule — or a rule for a
 * method nobody knows — up front (a typo must never widen or silently drop a check), and the
 * method's server half gets its rules already parsed (server/ops/join-port.ts).
 */
import type { z } from 'zod';
import { SigilError } from '../errors.js';
import { parseWith } from '../protocol/messages.js';
import type { JoinRule } from './port.js';

export type { JoinRule };

/** The rule schema of each method that takes rules, by method name (join/server-methods.ts). */
export type RuleSchemas = ReadonlyMap<string, z.ZodType>;

/** Validate a join_rule spec's method and its block (used by `apply`); returns the parsed block. */
export function validateRuleBlock(schemas: RuleSchemas, ruleName: string, spec: Record<string, unknown>): unknown {
  const method = String(spec.method);
  const schema = schemas.get(method);
  // A rule for a method nobody registered would be stored and never match: a typo ("tmp") that
  // silently drops a fleet's rule. `token` joins need no rule: the token names its bot.
  if (!schema)
    throw new SigilError(
      'policy_invalid',
      `join_rule ${ruleName}: unknown method "${method}" (join rules exist for: ${[...schemas.keys()].sort().join(', ')}; token joins need no rule)`,
    );
  if (spec[method] === undefined)
    throw new SigilError('policy_invalid', `join_rule ${ruleName}: method ${method} needs a "${method}:" block`);
  for (const k of Object.keys(spec)) {
    if (k !== 'method' && k !== 'bot' && k !== method)
      throw new SigilError(
        'policy_invalid',
        `join_rule ${ruleName}: unknown key "${k}" (a ${method} rule has method, bot and ${method})`,
      );
  }
  return parseWith(schema, spec[method], 'policy_invalid', `join_rule ${ruleName} ${method}`);
}

/** Stored join_rule resources of `method`, parsed with its schema, in name order (deterministic matching). */
export function parseRules<T>(
  resources: ReadonlyArray<{ name: string; spec: Record<string, unknown> }>,
  method: string,
  schema: z.ZodType | undefined,
): Array<JoinRule<T>> {
  return resources
    .filter((r) => r.spec.method === method)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((r) => ({
      name: r.name,
      bot: String(r.spec.bot),
      config: (schema ? schema.parse(r.spec[method]) : r.spec[method]) as T,
    }));
}
