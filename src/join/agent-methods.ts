/**
 * Every join method the agent knows, one line per method. Only agent-side code is imported
 * here (each method's config.ts and agent.ts): the agent never loads issuer code.
 */
import { awsIidAgentMethod } from './aws-iid/config.js';
import { azureAgentMethod } from './azure/config.js';
import { gcpAgentMethod } from './gcp/config.js';
import { oidcAgentMethod } from './oidc/config.js';
import type { AgentJoinMethodEntry } from './registry.js';
import { tokenAgentMethod } from './token/agent.js';
import { tpmAgentMethod } from './tpm/config.js';
import { x509AgentMethod } from './x509/config.js';

export const AGENT_JOIN_METHODS: ReadonlyArray<AgentJoinMethodEntry<unknown>> = Object.freeze([
  tokenAgentMethod,
  x509AgentMethod,
  tpmAgentMethod,
  awsIidAgentMethod,
  gcpAgentMethod,
  azureAgentMethod,
  oidcAgentMethod,
] as Array<AgentJoinMethodEntry<unknown>>);
