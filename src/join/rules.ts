/**
 * Join rules: `kind: join_rule` resources binding a join method's evidence to a bot.
 *
 *   kind: join_rule
 *   name: racks
 *   spec: { method: tpm, bot: gw, tpm: { ... method-specific ... } }
 *
 * Each method that uses rules registers the schema of its block here, so `sigil ctl apply`
 * refuses a malformed rule up front (a typo must never widen or silently drop a check), and
 * the method's server half gets its rules already parsed.
 */
import type { z } from 'zod';
import { SigilError } from '../errors.js';
import { parseWith } from '../protocol/messages.js';
import type { Stores } from '../server/store/types.js';

const RULE_SCHEMAS = new Map<string, z.ZodType>();

/** Called by a method module at load time. */
export function registerRuleSchema(method: string, schema: z.ZodType): void {
  RULE_SCHEMAS.set(method, schema);
}

export function ruleSchemaFor(method: string): z.ZodType | undefined {
  return RULE_SCHEMAS.get(method);
}

/** Validate a join_rule spec's method and its block (used by `apply`); returns the parsed block. */
export function validateRuleBlock(ruleName: string, spec: Record<string, unknown>): unknown {
  const method = String(spec.method);
  const schema = RULE_SCHEMAS.get(method);
  // A rule for a method nobody registered would be stored and never match: a typo ("tmp") that
  // silently drops a fleet's rule. `token` joins need no rule: the token names its bot.
  if (!schema) throw new SigilError('policy_invalid', `join_rule ${ruleName}: unknown method "${method}" (join rules exist for: ${[...RULE_SCHEMAS.keys()].sort().join(', ')}; token joins need no rule)`);
  if (spec[method] === undefined) throw new SigilError('policy_invalid', `join_rule ${ruleName}: method ${method} needs a "${method}:" block`);
  for (const k of Object.keys(spec)) {
    if (k !== 'method' && k !== 'bot' && k !== method) throw new SigilError('policy_invalid', `join_rule ${ruleName}: unknown key "${k}" (a ${method} rule has method, bot and ${method})`);
  }
  return parseWith(schema, spec[method], 'policy_invalid', `join_rule ${ruleName} ${method}`);
}

export interface JoinRule<T> {
  name: string;
  bot: string;
  config: T;
}

/** All rules for `method`, parsed with its schema, in name order (deterministic matching). */
export function rulesFor<T>(stores: Stores, method: string): Array<JoinRule<T>> {
  const schema = RULE_SCHEMAS.get(method);
  return stores.resources
    .list('join_rule')
    .filter((r) => r.spec.method === method)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((r) => ({
      name: r.name,
      bot: String(r.spec.bot),
      config: (schema ? schema.parse(r.spec[method]) : r.spec[method]) as T,
    }));
}
