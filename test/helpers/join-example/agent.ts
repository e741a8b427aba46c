/** The agent half of the example join method (descriptor.ts). */
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { AgentJoinMethodEntry } from '../../../src/join/registry.js';
import type { EvidenceContext, JoinMethodAgent } from '../../../src/join/types.js';
import type { JoinChallenge } from '../../../src/protocol/messages.js';
import { exampleDescriptor } from './descriptor.js';

/** The MAC both halves compute over the issuer's nonce, the request and the new key. */
export function exampleMac(secret: string, nonce: Buffer, ctx: EvidenceContext): string {
  return createHmac('sha256', secret).update(nonce).update(ctx.requestId).update(ctx.spkiDer).digest('base64url');
}

class ExampleJoinAgent implements JoinMethodAgent {
  readonly name = 'example';
  readonly canReattest = true;
  constructor(
    private readonly secret: string,
    private readonly machine: string,
  ) {}

  evidence(): Promise<Record<string, unknown>> {
    return Promise.resolve({ machine: this.machine });
  }

  respond(ch: JoinChallenge, ctx: EvidenceContext): Promise<Record<string, unknown>> {
    return Promise.resolve({
      challenge_id: ch.challenge_id,
      machine: this.machine,
      mac: exampleMac(this.secret, Buffer.from(ch.nonce, 'base64url'), ctx),
    });
  }
}

const settingsSchema = z.strictObject({ secret_file: z.string().min(1), machine: z.string().min(1) });

export const exampleAgentMethod: AgentJoinMethodEntry<z.infer<typeof settingsSchema>> = {
  descriptor: exampleDescriptor,
  configSchema: () => settingsSchema,
  // A real method keeps create() in a file of its own, imported here: `load: () => import('./config.js')…`.
  load: () =>
    Promise.resolve({
      create: (s: z.infer<typeof settingsSchema>) => ({
        method: new ExampleJoinAgent(readFileSync(s.secret_file, 'utf8').trim(), s.machine),
        singleUseCredential: undefined,
      }),
    }),
};
