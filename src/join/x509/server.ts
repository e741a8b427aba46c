/**
 * The issuer half of the x509 join (wire.ts describes the two rounds and the signed message).
 *
 * Round 1 checks the chain against the rules (evaluate.ts) and asks for a challenge, keeping
 * the chain with it. Round 2 gets the challenge from the host (join/challenge.ts), checks the
 * kept chain again — a CRL published between the rounds counts — verifies the device's
 * signature, and returns the attestation; the host uses the challenge up. For
 * rules with `require_tpm`, both rounds also carry the TPM binding of the device key
 * (tpm-check.ts).
 *
 * Stable machine id: `x509-` + the first 128 bits (hex) of SHA-256 over the device
 * certificate's SubjectPublicKeyInfo. The key, not the certificate: what the challenge proves
 * is possession of the key, and an IDevID key is born in and bound to the device (TPM, secure
 * element). Re-issuing the certificate for the same key — renewal of an enterprise
 * certificate, a corrected subject, a CA migration — keeps the machine's instance, its SPIFFE
 * ID and any lock on it; a new key is a new machine as far as Sigil can prove, so it gets a new
 * instance (issuer DN + serial would instead split one device into a new instance at every
 * re-issue, and would not follow the key at all).
 */
import { createHash } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import type { JoinCaches } from '../caches.js';
import { answeredChallenge, MAX_CHALLENGE_TTL_MS } from '../challenge.js';
import type { JoinAttestPort, JoinRenewPort } from '../port.js';
import type { JoinMethodDeps, ServerJoinMethodEntry } from '../registry.js';
import type { AttestInput, Attested, ChallengeRequired, JoinMethodServer } from '../types.js';
import { parseCert, type ParsedCert } from '../x509-cert.js';
import { evaluateChain, type Decision } from './evaluate.js';
import { formatName } from '../../pki/name-reader.js';
import { readSpki, classifySpki } from '../../pki/spki.js';
import { x509Descriptor } from './descriptor.js';
import { x509RuleSchema, type X509Rule } from './rule.js';
import { checkX509Renewal, PATH_FACT, pathFact } from './renewal.js';
import { tpmChallenge, verifyTpmBinding } from './tpm-check.js';
import {
  isAnswer,
  proofMessage,
  verifyProof,
  x509AnswerSchema,
  x509ChallengeStateSchema,
  x509EvidenceSchema,
  type X509ChallengeState,
} from './wire.js';

export function x509MachineId(leafSpki: Buffer): string {
  return `x509-${createHash('sha256').update(leafSpki).digest('hex').slice(0, 32)}`;
}

function parseChain(b64: readonly string[]): ParsedCert[] {
  return b64.map((c, i) =>
    parseCert(Buffer.from(c, 'base64'), i === 0 ? 'device certificate' : `chain certificate ${i + 1}`),
  );
}

export class X509JoinServer implements JoinMethodServer {
  readonly name = 'x509';

  constructor(private readonly caches: JoinCaches) {}

  async attest(input: AttestInput, port: JoinAttestPort): Promise<Attested | ChallengeRequired> {
    const rules = await port.rules<X509Rule>();
    if (rules.length === 0)
      throw new SigilError(
        'x509_no_rule',
        'no join_rule with method x509 exists on this issuer (sigil ctl --data-dir <issuer-data-dir> apply -f a rule with x509.ca_files)',
      );
    if (!isAnswer(input.evidence)) {
      const ev = parseWith(x509EvidenceSchema, input.evidence, 'x509_chain_malformed', 'x509 evidence');
      // Refuse now rather than after the device signed: it learns at once which check failed.
      const at = new Date(input.now);
      const decision = await evaluateChain(port, this.caches.trustFiles, rules, parseChain(ev.chain), at);
      const tpm = await tpmChallenge(decision, ev.tpm, at, { trustFiles: this.caches.trustFiles });
      const state: X509ChallengeState = { chain: ev.chain, ...(tpm ? { tpm: tpm.state } : {}) };
      return { challenge: { state, ...(tpm ? { data: tpm.data } : {}), ttlMs: MAX_CHALLENGE_TTL_MS } };
    }

    const ans = parseWith(x509AnswerSchema, input.evidence, 'x509_proof_invalid', 'x509 challenge answer');
    const ch = answeredChallenge(input);
    const kept = parseWith(x509ChallengeStateSchema, ch.state, 'internal', 'stored x509 challenge state');
    const at = new Date(input.now);
    const decision = await evaluateChain(port, this.caches.trustFiles, rules, parseChain(kept.chain), at);
    const leaf = decision.path.leaf;
    const message = proofMessage({
      challengeNonce: ch.nonce,
      agentNonce: Buffer.from(ans.agent_nonce, 'base64url'),
      requestId: input.requestId,
      spkiDer: input.spkiDer,
    });
    if (!verifyProof(leaf.fields.spki, ans.alg, message, Buffer.from(ans.signature, 'base64url'))) {
      throw new SigilError(
        'x509_proof_invalid',
        `the ${ans.alg} signature over the challenge does not verify with the key of the device certificate (subject "${formatName(leaf.subject)}")`,
      );
    }
    const tpmFacts = await verifyTpmBinding(decision, kept.tpm, ans.tpm, ch.nonce, at, {
      trustFiles: this.caches.trustFiles,
    });
    return {
      bot: decision.rule.bot,
      machineId: x509MachineId(leaf.fields.spki),
      facts: { ...facts(decision, ans.alg), ...tpmFacts },
      joinRule: decision.rule.name,
      canReattest: true,
    };
  }

  /** A device certificate revoked after enrolment stops renewals (./renewal.ts). */
  checkRenewal(instanceFacts: Record<string, unknown>, port: JoinRenewPort): Promise<void> {
    return checkX509Renewal(instanceFacts, port, this.caches.trustFiles);
  }
}

function facts(d: Decision, alg: string): Record<string, unknown> {
  const leaf = d.path.leaf;
  const key = classifySpki(readSpki(leaf.fields.spki, 'x509_chain_malformed'));
  return {
    x509_rule: d.rule.name,
    x509_subject: formatName(leaf.subject),
    x509_issuer: formatName(leaf.issuer),
    x509_serial: leaf.serialHex,
    x509_fingerprint: leaf.fingerprint,
    x509_not_after: leaf.fields.notAfter.toISOString(),
    x509_anchor: formatName(d.path.anchor.subject),
    x509_key: 'keyType' in key ? key.keyType : 'unknown',
    x509_proof_alg: alg,
    // What the renewal re-check (./renewal.ts) checks against the rule's CRLs then.
    [PATH_FACT]: pathFact(d.path.certs),
    ...(d.device
      ? { device_serial: d.device.serial, ...(d.device.ekPublicHash ? { ek_public_hash: d.device.ekPublicHash } : {}) }
      : {}),
  };
}

export const x509ServerMethod: ServerJoinMethodEntry = {
  descriptor: x509Descriptor,
  ruleSchema: x509RuleSchema,
  create: (deps: JoinMethodDeps) => new X509JoinServer(deps.caches),
};
