/**
 * Every join method the agent knows, one entry per method. Only what the config loader needs is
 * imported here — each method's descriptor and its zod schema (schema.ts); token's agent.ts, as
 * small — and `load()` imports the code that builds a method (config.ts, with the TPM stack,
 * PKCS#11, PKCS#7…) for the configured method only (issue #19). The agent never loads issuer code.
 */
import { awsIidDescriptor } from './aws-iid/descriptor.js';
import { awsIidAgentConfigSchema } from './aws-iid/schema.js';
import { azureDescriptor } from './azure/descriptor.js';
import { azureAgentConfigSchema } from './azure/schema.js';
import { gcpDescriptor } from './gcp/descriptor.js';
import { gcpAgentConfigSchema } from './gcp/schema.js';
import { oidcDescriptor } from './oidc/descriptor.js';
import { oidcAgentConfigSchema } from './oidc/schema.js';
import type { AgentJoinMethodEntry } from './registry.js';
import { tokenAgentMethod } from './token/agent.js';
import { tpmDescriptor } from './tpm/descriptor.js';
import { tpmAgentConfigSchema, tpmTcti, type TpmAgentConfig } from './tpm/schema.js';
import { x509Descriptor } from './x509/descriptor.js';
import { x509AgentConfigSchema } from './x509/schema.js';

export const AGENT_JOIN_METHODS: ReadonlyArray<AgentJoinMethodEntry<unknown>> = Object.freeze([
  tokenAgentMethod,
  {
    descriptor: x509Descriptor,
    configSchema: x509AgentConfigSchema,
    load: () => import('./x509/config.js').then((m) => m.x509AgentCode),
  },
  {
    descriptor: tpmDescriptor,
    configSchema: tpmAgentConfigSchema,
    identityKeyTpm: (settings) => tpmTcti(settings as TpmAgentConfig),
    load: () => import('./tpm/config.js').then((m) => m.tpmAgentCode),
  },
  {
    descriptor: awsIidDescriptor,
    configSchema: awsIidAgentConfigSchema,
    load: () => import('./aws-iid/config.js').then((m) => m.awsIidAgentCode),
  },
  {
    descriptor: gcpDescriptor,
    configSchema: gcpAgentConfigSchema,
    load: () => import('./gcp/config.js').then((m) => m.gcpAgentCode),
  },
  {
    descriptor: azureDescriptor,
    configSchema: azureAgentConfigSchema,
    load: () => import('./azure/config.js').then((m) => m.azureAgentCode),
  },
  {
    descriptor: oidcDescriptor,
    configSchema: oidcAgentConfigSchema,
    load: () => import('./oidc/config.js').then((m) => m.oidcAgentCode),
  },
] as Array<AgentJoinMethodEntry<unknown>>);
