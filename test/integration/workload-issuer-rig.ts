/**
 * Shared by the workload-issuer tests (HTTPS and MQTT): the registration policy, an agent state
 * holding a joined identity, and signed `workload` requests built by hand (so refusals can be
 * asked for exactly).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAgentState, type AgentState } from '../../src/agent/state/index.js';
import { namedSigner } from '../../src/agent/named-signer.js';
import { SoftwareSigner } from '../../src/keystore/index.js';
import type { Signer } from '../../src/keystore/signer.js';
import { buildCsr } from '../../src/pki/csr.js';
import { fromPem, toPem } from '../../src/pki/pem.js';
import { newAnswerKey } from '../../src/protocol/answer-key.js';
import { signJws, type Jws } from '../../src/protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../../src/protocol/messages.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { newRequestId } from '../../src/util/secret.js';
import type { Harness, Identity } from './harness.js';

/** `gw` (the harness's bot) and `db`; `web` is for gw only, `cache` for db only. */
export const WORKLOAD_POLICY = `
kind: bot
name: db
spec:
  roles: [edge]
---
kind: workload
name: web
spec:
  spiffe_id: spiffe://example.org/web
  selectors: [unix:uid:1000, systemd:unit:web.service]
  nodes: { bots: [gw] }
  ttl: 48h
  dns_names: [web.internal]
  jwt_audiences: [vault, aws]
---
kind: workload
name: cache
spec:
  spiffe_id: spiffe://example.org/cache
  selectors: [unix:user:redis]
  nodes: { bots: [db] }
`;

export async function applyWorkloadPolicy(h: Harness): Promise<void> {
  await runAdminOp(h.ctx.stores, 'apply', { yaml: WORKLOAD_POLICY, trust_domain: 'example.org' });
}

/** An agent state (SQLite in a temp dir) holding `id` and the pinned root, as a joined agent has. */
export function agentStateFor(h: Harness, id: Identity): { state: AgentState; close(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-wl-agent-'));
  const state = openAgentState(join(dir, 'data'));
  const now = h.ctx.now();
  state.saveIdentity({
    instanceId: id.result.instance_id,
    spiffeId: id.result.spiffe_id,
    bot: id.result.bot,
    chainPem: id.chainPem,
    keyRef: JSON.stringify({ storage: 'software', pkcs8Pem: (id.signer as SoftwareSigner).toPkcs8Pem() }),
    keyStorage: 'software',
    exportable: true,
    serial: id.result.serial,
    notBefore: id.result.not_before,
    notAfter: id.result.not_after,
    generation: id.result.generation,
    joinMethod: 'token',
    issuedAt: now,
    renewAfter: id.result.renew_after,
  });
  state.saveBundle({ rootsPem: [h.rootPem], updatedAt: now });
  return {
    state,
    close() {
      state.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const csrPem = async (signer: Signer = SoftwareSigner.generate()): Promise<string> =>
  toPem('CERTIFICATE REQUEST', await buildCsr(signer));

/** A signed `workload` request from `who` (signer + chain), as the agent builds it. */
export async function workloadEnvelope(
  who: { signer: Signer; chainPem: string[] },
  fields: Record<string, unknown>,
  now: number,
  requestId = newRequestId(),
): Promise<{ envelope: Jws; requestId: string }> {
  const payload = {
    v: PROTOCOL_VERSION,
    op: 'workload',
    request_id: requestId,
    timestamp: now,
    ...namedSigner(who.chainPem),
    ...fields,
  };
  const x5c = who.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
  return { envelope: await signJws(who.signer, TYP_REQUEST, payload, x5c), requestId };
}

export { newAnswerKey };
