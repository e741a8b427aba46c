/**
 * The agent half of the configured join method, plus what the agent needs to know about it
 * beyond the JoinMethodAgent interface: a fingerprint of the single-use credential (if the
 * method has one), so that after an expiry the agent can tell, without asking the issuer,
 * that its token is spent and a person must act (`reattest_required`).
 *
 * Methods that can re-attest (tpm, x509: canReattest = true) have no such credential; after an
 * expiry the agent simply joins again with fresh evidence, over whichever transport works.
 */
import { TokenJoinAgent } from '../join/token/agent.js';
import { tokenId, tokenKey } from '../join/token/wire.js';
import { SigilError } from '../errors.js';
import { tpmAgentConfigSchema, tpmJoinAgentFromConfig } from '../join/tpm/config.js';
import type { TpmSigner } from '../keystore/tpm.js';
import { awsIidAgentConfigSchema, awsIidJoinAgentFromConfig } from '../join/aws-iid/config.js';
import { azureAgentConfigSchema, azureJoinAgentFromConfig } from '../join/azure/config.js';
import { gcpAgentConfigSchema, gcpJoinAgentFromConfig } from '../join/gcp/config.js';
import { oidcAgentConfigSchema, oidcJoinAgentFromConfig } from '../join/oidc/config.js';
import type { JoinMethodAgent } from '../join/types.js';
import { x509AgentConfigSchema, x509JoinAgentFromConfig } from '../join/x509/config.js';
import { parseWith } from '../protocol/messages.js';
import type { AgentConfig } from './config.js';

/** TPM identity keys made for joins in flight, found again by the tpm method by their SPKI. */
export class PendingTpmKeys {
  private readonly keys: TpmSigner[] = [];
  add(k: TpmSigner): void {
    this.keys.push(k);
    if (this.keys.length > 8) this.keys.shift();
  }
  find(spki: Buffer): TpmSigner | undefined {
    return this.keys.find((k) => k.publicKeySpki().equals(spki));
  }
}

export interface AgentJoinMethod {
  /** Set for the tpm join: where the agent registers the identity key it made. */
  pendingTpmKeys?: PendingTpmKeys;
  method: JoinMethodAgent;
  /** Identifies a single-use credential (token id); undefined for methods that can re-attest. */
  singleUseCredential: string | undefined;
}

/** Setting under which the credential of the last successful join is remembered. */
export const USED_CREDENTIAL_SETTING = 'join.used_credential';

export function joinMethodFor(cfg: AgentConfig): AgentJoinMethod {
  const j = cfg.join;
  if (j.method === 'token') {
    const method = new TokenJoinAgent(j.token);
    return { method, singleUseCredential: `token:${tokenId(tokenKey(j.token).publicRaw)}` };
  }
  const where = `${cfg.source}: join.${j.method}`;
  const reattest = (method: JoinMethodAgent): AgentJoinMethod => ({ method, singleUseCredential: undefined });
  switch (j.method) {
    case 'x509':
      return reattest(x509JoinAgentFromConfig(parseWith(x509AgentConfigSchema, j.settings, 'config_invalid', where)));
    case 'aws_iid':
      return reattest(awsIidJoinAgentFromConfig(parseWith(awsIidAgentConfigSchema, j.settings, 'config_invalid', where), { dataDir: cfg.dataDir }));
    case 'gcp':
      return reattest(gcpJoinAgentFromConfig(parseWith(gcpAgentConfigSchema, j.settings, 'config_invalid', where)));
    case 'azure':
      return reattest(azureJoinAgentFromConfig(parseWith(azureAgentConfigSchema, j.settings, 'config_invalid', where)));
    case 'oidc':
      return reattest(oidcJoinAgentFromConfig(parseWith(oidcAgentConfigSchema, j.settings, 'config_invalid', where)));
    case 'tpm': {
      if (cfg.keyStorage !== 'tpm') throw new SigilError('config_invalid', `${where}: the tpm join certifies a TPM-resident identity key; set key_storage: tpm`);
      const pending = new PendingTpmKeys();
      const method = tpmJoinAgentFromConfig(parseWith(tpmAgentConfigSchema, j.settings, 'config_invalid', where), (spki) => pending.find(spki));
      return { method, singleUseCredential: undefined, pendingTpmKeys: pending };
    }
  }
}

/** The admin command that gives a token-joined agent a way back after its identity expired. */
export function reattestHint(methodName: string, bot: string, configPath: string): string {
  return `the identity expired and the ${methodName} join method cannot re-attest by itself; create a new token with \`sigil ctl token create --bot ${bot}\`, put it in join.token (or join.token_file) of ${configPath} and restart the agent (the running daemon reads its config only at start: \`systemctl restart sigil-agent\`, or \`sigil agent run --once --config ${configPath}\` when no daemon runs)`;
}
