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
import type { JoinMethodAgent } from '../join/types.js';
import type { AgentConfig } from './config.js';

export interface AgentJoinMethod {
  method: JoinMethodAgent;
  /** Identifies a single-use credential (token id); undefined for methods that can re-attest. */
  singleUseCredential: string | undefined;
}

/** Setting under which the credential of the last successful join is remembered. */
export const USED_CREDENTIAL_SETTING = 'join.used_credential';

export function joinMethodFor(cfg: AgentConfig): AgentJoinMethod {
  switch (cfg.join.method) {
    case 'token': {
      const method = new TokenJoinAgent(cfg.join.token);
      return { method, singleUseCredential: `token:${tokenId(tokenKey(cfg.join.token).publicRaw)}` };
    }
  }
}

/** The admin command that gives a token-joined agent a way back after its identity expired. */
export function reattestHint(methodName: string, bot: string, configPath: string): string {
  return `the identity expired and the ${methodName} join method cannot re-attest by itself; create a new token with \`sigil ctl token create --bot ${bot}\`, put it in join.token (or join.token_file) and run \`sigil agent run --once --config ${configPath}\``;
}
