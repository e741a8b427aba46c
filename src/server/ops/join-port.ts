/**
 * The join methods' ports (join/port.ts), built from the issuer's stores for one method and one
 * join: a method reads its own rules and key bindings, the records its checks need, and writes
 * only inside the issuing transaction, through {@link commitPort}.
 */
import type { JoinAttestPort, JoinCommitPort } from '../../join/port.js';
import { parseRules } from '../../join/rules.js';
import type { BuiltJoinMethod } from '../../join/server-methods.js';
import type { Logger } from '../../util/log.js';
import type { Stores, TxStores } from '../store/types.js';

export function attestPort(stores: Stores, method: BuiltJoinMethod, now: () => number, log: Logger): JoinAttestPort {
  const name = method.entry.descriptor.name;
  return {
    rules: async <T>() => parseRules<T>(await stores.resources.list('join_rule'), name, method.entry.ruleSchema),
    token: (id) => stores.tokens.get(id),
    jtiSeen: (issuer, jti) => stores.tokenReplay.seen(issuer, jti),
    device: (fingerprint) => stores.devices.getByFingerprint(fingerprint),
    keyBinding: (subject) => stores.keyBindings.get(name, subject),
    instanceFacts: async (id) => (await stores.instances.get(id))?.facts,
    now,
    log: log.child({ join_method: name }),
  };
}

/** Over the issuing transaction's stores `tx`; valid only inside it. */
export function commitPort(tx: TxStores, method: BuiltJoinMethod, now: number, instanceId: string): JoinCommitPort {
  const name = method.entry.descriptor.name;
  return {
    now,
    instanceId,
    consumeToken: async (id) => {
      const r = await tx.tokens.consume(id, now, instanceId);
      return r.ok ? { ok: true } : r;
    },
    recordJti: async (issuer, jti, expiresAt) => {
      // Rows outlive their token by the skew only; pruned as joins go by.
      await tx.tokenReplay.prune(now);
      return tx.tokenReplay.record(issuer, jti, expiresAt, now);
    },
    bindKey: (rec) => tx.keyBindings.bind({ method: name, ...rec, createdAt: now }),
  };
}
