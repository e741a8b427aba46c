/**
 * The issuer half of the example join method (descriptor.ts). Round 1 asks for a challenge;
 * round 2 gets it from the host (`input.challenge`: already checked to be unused, unexpired and
 * bound to this request and key), checks the MAC against each rule's secret, and returns the
 * attestation. It has no `commit`: the host uses the challenge up, so there is nothing to forget.
 */
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { SigilError } from '../../../src/errors.js';
import { answeredChallenge, isChallengeAnswer } from '../../../src/join/challenge.js';
import type { JoinAttestPort } from '../../../src/join/port.js';
import type { ServerJoinMethodEntry } from '../../../src/join/registry.js';
import type { AttestInput, Attested, ChallengeRequired, JoinMethodServer } from '../../../src/join/types.js';
import { parseWith } from '../../../src/protocol/messages.js';
import { exampleMac } from './agent.js';
import { exampleDescriptor } from './descriptor.js';

const ruleSchema = z.strictObject({ secret: z.string().min(16), machines: z.array(z.string()).min(1) });
type ExampleRule = z.infer<typeof ruleSchema>;

const answerSchema = z.strictObject({ challenge_id: z.string(), machine: z.string(), mac: z.string() });

class ExampleJoinServer implements JoinMethodServer {
  readonly name = 'example';

  async attest(input: AttestInput, port: JoinAttestPort): Promise<Attested | ChallengeRequired> {
    if (!isChallengeAnswer(input.evidence)) return { challenge: { ttlMs: 30_000 } };
    const ans = parseWith(answerSchema, input.evidence, 'bad_request', 'example answer');
    const ch = answeredChallenge(input);
    const mac = Buffer.from(ans.mac);
    for (const rule of await port.rules<ExampleRule>()) {
      const want = Buffer.from(exampleMac(rule.config.secret, ch.nonce, input));
      if (want.length === mac.length && timingSafeEqual(want, mac) && rule.config.machines.includes(ans.machine)) {
        return {
          bot: rule.bot,
          machineId: `example-${ans.machine}`,
          facts: { example_rule: rule.name, example_machine: ans.machine },
          joinRule: rule.name,
          canReattest: true,
        };
      }
    }
    throw new SigilError('signature_invalid', 'no example join rule accepts this answer');
  }
}

export const exampleServerMethod: ServerJoinMethodEntry = {
  descriptor: exampleDescriptor,
  ruleSchema,
  create: () => new ExampleJoinServer(),
};
