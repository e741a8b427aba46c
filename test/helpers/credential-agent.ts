/**
 * The agent's credential outputs against an in-process issuer (test/integration/harness.ts, real
 * HTTPS): a real agent state (SQLite in a temp dir) holding a joined identity, and the real
 * CredentialOutputs with its client over an issuer link of one HTTPS transport — what `sigil agent run` does for credential outputs,
 * without the identity loop around it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LinkCredentialClient } from '../../src/agent/credential-client.js';
import { CredentialOutputs } from '../../src/agent/credentials.js';
import { IssuerLink } from '../../src/agent/transports.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { parseCredentialOutput } from '../../src/agent/outputs/config.js';
import { openAgentState, type AgentState } from '../../src/agent/state/index.js';
import type { SoftwareSigner } from '../../src/keystore/index.js';
import { silentLogger } from '../../src/util/log.js';
import type { Harness, Identity } from '../integration/harness.js';

export interface CredentialAgent {
  state: AgentState;
  dir: string;
  /** Outputs built from YAML-like entries (paths absolute), on the agent's own (real) clock. */
  outputs(entries: Array<Record<string, unknown>>): CredentialOutputs;
  close(): void;
}

export async function credentialAgent(
  h: Harness,
  opts: { bot?: string } = {},
): Promise<CredentialAgent & { id: Identity }> {
  const id = await h.join({ token: await h.token({ bot: opts.bot ?? 'gw' }) });
  const dir = mkdtempSync(join(tmpdir(), 'sigil-cred-agent-'));
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
  const made: CredentialOutputs[] = [];
  const links: IssuerLink[] = [];
  return {
    id,
    state,
    dir,
    outputs(entries) {
      const configs = entries.map((e, i) => parseCredentialOutput(e, `outputs[${i}]`, (p) => p));
      const link = new IssuerLink([
        new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin: h.ctx.ca.pin, rootPem: h.rootPem }),
      ]);
      links.push(link);
      const client = new LinkCredentialClient(link, () => h.rootPem);
      const o = new CredentialOutputs(configs, { state, log: silentLogger(), client, now: Date.now });
      made.push(o);
      return o;
    },
    close() {
      for (const o of made) o.close();
      for (const l of links) void l.close();
      state.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
