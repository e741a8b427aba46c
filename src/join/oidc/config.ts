/**
 * Building the oidc join agent from the agent's configuration (agent.yaml, snake_case):
 *
 *   join:
 *     method: oidc
 *     oidc:
 *       provider: github          # github | gitlab | circleci | kubernetes | generic
 *       audience: sigil.example.com   # github: the audience to ask the Actions token service for
 *       token_env: SIGIL_ID_TOKEN     # where the CI put the token (gitlab default SIGIL_ID_TOKEN,
 *                                     #   circleci default CIRCLE_OIDC_TOKEN_V2)
 *       token_file: /var/run/secrets/tokens/sigil   # a file read at each join (kubernetes default)
 *
 * Exactly one source applies: github asks the Actions token service unless token_env or
 * token_file is given; the others read the variable or the file.
 */
import { SigilError } from '../../errors.js';
import { OidcJoinAgent, type TokenSource } from './agent.js';
import { OIDC_PROVIDERS } from './presets.js';
import type { AgentJoinMethodCode } from '../registry.js';
import type { OidcAgentConfig } from './schema.js';
export { oidcAgentConfigSchema, type OidcAgentConfig } from './schema.js';

export const DEFAULT_TOKEN_ENV: Partial<Record<(typeof OIDC_PROVIDERS)[number], string>> = {
  gitlab: 'SIGIL_ID_TOKEN',
  circleci: 'CIRCLE_OIDC_TOKEN_V2',
};
export const DEFAULT_K8S_TOKEN_FILE = '/var/run/secrets/tokens/sigil';

export function oidcTokenSource(cfg: OidcAgentConfig, env: NodeJS.ProcessEnv = process.env): TokenSource {
  if (cfg.token_file !== undefined) return { kind: 'file', path: cfg.token_file };
  if (cfg.token_env !== undefined) return { kind: 'env', name: cfg.token_env, env };
  switch (cfg.provider) {
    case 'github':
      if (cfg.audience === undefined)
        throw new SigilError(
          'config_invalid',
          "join.oidc.audience is required for github (the audience of the issuer's oidc rule)",
        );
      return { kind: 'github', audience: cfg.audience, env };
    case 'kubernetes':
      return { kind: 'file', path: DEFAULT_K8S_TOKEN_FILE };
    case 'gitlab':
    case 'circleci':
      return { kind: 'env', name: DEFAULT_TOKEN_ENV[cfg.provider]!, env };
    case 'generic':
      throw new SigilError('config_invalid', 'join.oidc for provider generic needs token_env or token_file');
  }
}

export function oidcJoinAgentFromConfig(cfg: OidcAgentConfig, env: NodeJS.ProcessEnv = process.env): OidcJoinAgent {
  return new OidcJoinAgent(oidcTokenSource(cfg, env));
}

/** The agent side of the oidc join (its registry entry in join/agent-methods.ts loads this file). */
export const oidcAgentCode: AgentJoinMethodCode<OidcAgentConfig> = {
  create: (settings) => ({ method: oidcJoinAgentFromConfig(settings), singleUseCredential: undefined }),
};
