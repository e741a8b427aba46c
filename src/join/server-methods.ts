/**
 * Every join method the issuer knows. Importing this module also registers each method's
 * join_rule schema (join/rules.ts), which `sigil ctl apply` needs even without a running issuer.
 */
import { AwsIidJoinServer } from './aws-iid/server.js';
import { AzureJoinServer } from './azure/server.js';
import { GcpJoinServer } from './gcp/server.js';
import { OidcJoinServer } from './oidc/server.js';
import { TokenJoinServer } from './token/server.js';
import { TpmJoinServer } from './tpm/server.js';
import type { JoinMethodServer } from './types.js';
import { X509JoinServer } from './x509/server.js';

export function serverJoinMethods(): Map<string, JoinMethodServer> {
  const methods: JoinMethodServer[] = [new TokenJoinServer(), new X509JoinServer(), new AwsIidJoinServer(), new GcpJoinServer(), new AzureJoinServer(), new OidcJoinServer(), new TpmJoinServer()];
  return new Map(methods.map((m) => [m.name, m]));
}
