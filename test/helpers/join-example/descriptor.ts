/**
 * A tiny join method used only in tests: proof that adding a join method is one new folder
 * (descriptor.ts, agent.ts, server.ts) plus one line in each registry list
 * (src/join/agent-methods.ts, src/join/server-methods.ts). docs/adding-a-join-method.md walks
 * through it.
 *
 * The scheme ("example"): the agent and a join rule share a secret; the issuer asks for a
 * challenge, the agent answers with HMAC-SHA256(secret, nonce ‖ request id ‖ new key's SPKI).
 * Not a real attestation — a shared secret proves nothing about a machine — but it has every
 * moving part: agent settings, a rule, a challenge round and a stable machine id.
 */
import type { JoinMethodDescriptor } from '../../../src/join/registry.js';

export const exampleDescriptor: JoinMethodDescriptor = {
  name: 'example',
  pathKeys: ['secret_file'],
  // A real method adds its own codes to src/errors.ts (one line each) and lists them here.
  errorCodes: ['signature_invalid'],
  capabilities: { canReattest: true, challengeRound: true },
};
