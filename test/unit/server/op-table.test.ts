/**
 * The operation table (server/ops/table.ts) is the one list both transport adapters loop over:
 * every protocol operation has exactly one entry, under its own name, with the rules the
 * adapters apply (docs/operations.md).
 */
import { describe, expect, it } from 'vitest';
import { OPS } from '../../../src/protocol/messages.js';
import { OPERATION_LIST, OPERATIONS, operationNamed } from '../../../src/server/ops/table.js';
import { answerRuleOf } from '../../../src/transport/mqtt/answer-topic.js';

describe('the operation table', () => {
  it('has one entry per protocol operation, in protocol order, each under its own name', () => {
    expect(OPERATION_LIST.map((o) => o.name)).toEqual([...OPS]);
    for (const op of OPS) expect(OPERATIONS[op].name).toBe(op);
    expect(operationNamed('admin')).toBeUndefined();
    expect(operationNamed('__proto__')).toBeUndefined();
  });

  it('declares the rules the adapters apply', () => {
    const rules = Object.fromEntries(
      OPERATION_LIST.map((o) => [
        o.name,
        { body: o.takesBody, answerTo: o.answerTo, rateLimited: o.rateLimited, audited: o.audited },
      ]),
    );
    expect(rules).toEqual({
      join: { body: true, answerTo: 'bootstrap', rateLimited: true, audited: true },
      renew: { body: true, answerTo: 'signer', rateLimited: false, audited: true },
      credential: { body: true, answerTo: 'signer', rateLimited: false, audited: true },
      bundle: { body: false, answerTo: 'any', rateLimited: false, audited: false },
      workload: { body: true, answerTo: 'signer', rateLimited: false, audited: true },
      attest: { body: true, answerTo: 'signer', rateLimited: false, audited: true },
    });
    // An unknown operation is answered (not_found) only where a join would be.
    expect(answerRuleOf('nope')).toBe('bootstrap');
  });
});
