/**
 * Running a join method's agent half against the in-process issuer (test/integration/harness.ts)
 * over real HTTPS with the agent's own client and exchange loop (join/exchange.ts), and the
 * standard expectation for a refusal: the code, one audit row saying so, nothing else changed.
 */
import { expect } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { runJoinExchange, type JoinExchangeResult } from '../../src/join/exchange.js';
import type { JoinMethodAgent } from '../../src/join/types.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import { spkiPin } from '../../src/pki/chain.js';
import type { Jws } from '../../src/protocol/jws.js';
import type { AuditRecord } from '../../src/server/store/types.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import type { Harness } from '../integration/harness.js';

export interface JoinRunner {
  client: HttpsIssuerClient;
  exchange(
    agent: JoinMethodAgent,
    opts?: { sent?: Jws[]; identity?: SoftwareSigner },
  ): Promise<JoinExchangeResult & { identity: SoftwareSigner }>;
  /** The join's result, or the code it was refused with (any other error is thrown). */
  outcome(agent: JoinMethodAgent): Promise<{ ok: true; result: unknown } | { ok: false; code: string }>;
  /** Expect a refusal with `code`; returns the error and the audit row. */
  refused(agent: JoinMethodAgent, code: string): Promise<{ error: SigilError; audit: AuditRecord }>;
  close(): void;
}

export function joinRunner(h: Harness): JoinRunner {
  const client = new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin: spkiPin(Buffer.from(h.rootPem)) });
  const exchange: JoinRunner['exchange'] = async (agent, opts = {}) => {
    const identity = opts.identity ?? SoftwareSigner.generate();
    const r = await runJoinExchange({
      method: agent,
      identity,
      send: (env) => {
        opts.sent?.push(env);
        return client.post('join', env);
      },
      rootPem: () => client.ensureRoot(),
      now: () => h.ctx.now(),
    });
    return { ...r, identity };
  };
  return {
    client,
    exchange,
    async outcome(agent) {
      try {
        return { ok: true, result: (await exchange(agent)).payload.result };
      } catch (e) {
        if (e instanceof SigilError) return { ok: false, code: e.code };
        throw e;
      }
    },
    async refused(agent, code) {
      const seq = await h.lastAuditSeq();
      const before = await h.counts();
      const err = await exchange(agent).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, `join should be refused with ${code}`).toBeInstanceOf(SigilError);
      expect((err as SigilError).code, (err as SigilError).message).toBe(code);
      const rows = await h.auditAfter(seq);
      expect(rows.map((r) => ({ action: r.action, outcome: r.outcome, code: r.code, method: r.method }))).toEqual([
        { action: 'join', outcome: 'refused', code, method: agent.name },
      ]);
      expect(await h.counts()).toEqual({ ...before, audit: before.audit + 1 });
      return { error: err as SigilError, audit: rows[0]! };
    },
    close: () => client.close(),
  };
}

/** The agent half of an oidc join that presents `token` (a CI job's or a pod's). */
export const oidcTokenAgent = (token: string): JoinMethodAgent => ({
  name: 'oidc',
  canReattest: true,
  evidence: () => Promise.resolve({ token }),
});
