/**
 * The agent side of a tpm join for tests and the bench: a swtpm (test/helpers/swtpm.ts), a
 * TPM identity key, the real TpmJoinAgent, and the host's exchange (join/exchange.ts) over the
 * agent's HTTPS client — plus a way to tamper with the answer to the challenge, which is how
 * the attack tests forge what a hostile agent would send.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSignedAttest } from '../../src/attest/structures.js';
import { SigilError } from '../../src/errors.js';
import { runJoinExchange, type JoinExchangeResult } from '../../src/join/exchange.js';
import { akTemplate, quoteWithValues, TpmJoinAgent, type TpmJoinAgentOptions } from '../../src/join/tpm/agent.js';
import type { PcrSelectionWire } from '../../src/join/tpm/wire.js';
import { OWNER_PARENT, TpmAccess } from '../../src/keystore/tpm-access.js';
import type { JoinMethodAgent } from '../../src/join/types.js';
import { TpmSigner } from '../../src/keystore/tpm.js';
import type { JoinChallenge } from '../../src/protocol/messages.js';
import type { EccPublic } from '../../src/tpm/structures/public.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { spkiPin } from '../../src/pki/chain.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { expectJoinRefusedBy, type Harness } from '../integration/harness.js';
import type { SwtpmInstance } from './swtpm.js';

export type Answer = Record<string, unknown> & { quote: { attest: string; signature: string }; activated: string };
export type Tamper = (answer: Answer, challenge: JoinChallenge) => Answer | Promise<Answer>;

export interface TpmJoinOptions {
  /** The event log file to send; default none. */
  eventLog?: string | false;
  /** Options for TpmJoinAgent (ak, akTemplate, ek…). */
  agent?: Partial<Omit<TpmJoinAgentOptions, 'tpm' | 'identityKey'>>;
  /** Template of the identity key (default: keystore/tpm.ts identityKeyTemplate). */
  keyTemplate?: EccPublic;
  /** Rewrite the challenge answer before it is sent. */
  tamper?: Tamper;
  /** Called with every challenge answer as sent (after tampering). */
  onAnswer?: (answer: Answer) => void;
}

export interface TpmJoinResult extends JoinExchangeResult {
  identity: TpmSigner;
  agent: TpmJoinAgent;
}

export function httpsClient(h: Harness): HttpsIssuerClient {
  return new HttpsIssuerClient({ url: `https://127.0.0.1:${h.port}`, pin: spkiPin(Buffer.from(h.rootPem)) });
}

/** Write a boot event log next to the TPM and return its path. */
export function writeLog(tpm: SwtpmInstance, name: string, log: Buffer): string {
  const path = join(tpm.dir, name);
  writeFileSync(path, log);
  return path;
}

/** A join as an agent makes it: the identity key and the join method share one TpmAccess (`access`, default a new one). */
export async function tpmJoin(
  h: Harness,
  client: HttpsIssuerClient,
  tpm: SwtpmInstance,
  o: TpmJoinOptions = {},
  access = new TpmAccess(tpm.tcti),
): Promise<TpmJoinResult> {
  const identity = await TpmSigner.create(access, o.keyTemplate ? { template: o.keyTemplate } : {});
  const agent = new TpmJoinAgent({
    tpm: access,
    identityKey: () => identity,
    eventLog: o.eventLog ?? false,
    ...o.agent,
  });
  const method: JoinMethodAgent = {
    name: agent.name,
    canReattest: agent.canReattest,
    evidence: (ctx) => agent.evidence(ctx),
    respond: async (challenge, ctx) => {
      let answer = (await agent.respond(challenge, ctx)) as Answer;
      if (o.tamper) answer = await o.tamper(answer, challenge);
      o.onAnswer?.(answer);
      return answer;
    },
  };
  const r = await runJoinExchange({
    method,
    identity,
    send: (env) => client.post('join', env),
    rootPem: () => client.ensureRoot(),
    now: () => h.ctx.now(),
  });
  return { ...r, identity, agent };
}

export const expectTpmRefused = (h: Harness, run: () => Promise<unknown>, code: string): Promise<SigilError> =>
  expectJoinRefusedBy(h, 'tpm', run, code);

/** Replace every tpm join_rule of the issuer with these (other rules stay). */
export async function setTpmRules(h: Harness, ...rules: string[]): Promise<void> {
  for (const r of await h.ctx.stores.resources.list('join_rule'))
    if (r.spec.method === 'tpm') await h.ctx.stores.resources.delete('join_rule', r.name);
  if (rules.length > 0) await runAdminOp(h.ctx.stores, 'apply', { yaml: rules.join('---\n') });
}

/** A tpm join_rule document for bot gw; `block` is the YAML of the tpm: block. */
export function tpmRule(name: string, block: string): string {
  return `kind: join_rule\nname: ${name}\nspec:\n  method: tpm\n  bot: gw\n  tpm:\n${block.trim().replace(/^/gm, '    ')}\n`;
}

/** A quote over a challenge's nonce and PCR selection by a fresh AK of another TPM (an impostor's quote). */
export async function quoteOnAnotherTpm(
  tcti: string,
  challenge: JoinChallenge,
): Promise<{ attest: string; signature: string }> {
  const selection = (challenge.data as { pcr_selection: PcrSelectionWire }).pcr_selection;
  const access = new TpmAccess(tcti);
  const quote = await access.run(async (tpm) => {
    const ak = await access.withParent(tpm, OWNER_PARENT, async (srk) =>
      tpm.load(srk, await tpm.create(srk, akTemplate())),
    );
    return tpm.withTransient(
      ak,
      async (k) => (await quoteWithValues(tpm, k, Buffer.from(challenge.nonce, 'base64url'), selection)).quote,
    );
  });
  return encodeSignedAttest(quote);
}
