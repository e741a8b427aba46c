/**
 * The issuer half of the aws_iid join (wire.ts describes the evidence and why a binding key).
 *
 * Per rule, in name order (rule-eval.ts): the document's signature with the rule's certificate
 * directory (verify.ts), then the allow list. Then, for the accepting rule: the binding key's
 * signature over this request, and the instance's binding — none yet (a first join, limited
 * by `first_join_within` when set) or the same key. `commit`, inside the issuing transaction,
 * binds a first join atomically, so two first joins racing with one document cannot both win.
 *
 * Stable machine id: `aws-<instance id>`; the instance keeps its SPIFFE ID and any lock across
 * re-joins, and can re-join by itself after its identity expired (canReattest).
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import { checkAllowList, entryMismatch } from '../allow-match.js';
import type { JoinAttestPort } from '../port.js';
import type { ServerJoinMethodEntry } from '../registry.js';
import { firstAcceptingRule } from '../rule-eval.js';
import type { AttestInput, Attested, JoinMethodServer } from '../types.js';
import { BUNDLED_AWS_CERTS_DIR, type AwsCertCache } from './certs.js';
import { awsIidDescriptor } from './descriptor.js';
import { AWS_ALLOW_FIELDS, awsRuleSchema, type AwsRule } from './rule.js';
import { verifyIdentityDocument, type VerifiedDocument } from './verify.js';
import { awsEvidenceSchema, awsMachineId, bindingMessage, keyHash } from './wire.js';

export const AWS_METHOD = 'aws_iid';

export function awsFacts(v: VerifiedDocument): Record<string, unknown> {
  const d = v.doc;
  return {
    aws_account_id: d.accountId,
    aws_region: d.region,
    aws_instance_id: d.instanceId,
    ...(d.imageId !== undefined ? { aws_image_id: d.imageId } : {}),
    ...(d.instanceType !== undefined ? { aws_instance_type: d.instanceType } : {}),
    ...(d.availabilityZone !== undefined ? { aws_availability_zone: d.availabilityZone } : {}),
    ...(d.pendingTime !== undefined ? { aws_pending_time: d.pendingTime } : {}),
    aws_signature_kind: v.kind,
  };
}

const describe = (f: Record<string, unknown>): string =>
  `instance ${String(f.aws_instance_id)} (account ${String(f.aws_account_id)}, ${String(f.aws_region)})`;

export class AwsIidJoinServer implements JoinMethodServer {
  readonly name = AWS_METHOD;

  constructor(private readonly certs: AwsCertCache) {}

  async attest(input: AttestInput, port: JoinAttestPort): Promise<Attested> {
    const rules = await port.rules<AwsRule>();
    if (rules.length === 0)
      throw new SigilError(
        'aws_no_rule',
        'no join_rule with method aws_iid exists on this issuer (sigil ctl --data-dir <issuer-data-dir> apply -f a rule with aws_iid.allow)',
      );
    const ev = parseWith(awsEvidenceSchema, input.evidence, 'aws_evidence_malformed', 'aws_iid evidence');
    const signed = {
      kind: ev.kind,
      document: Buffer.from(ev.document, 'base64'),
      signature: Buffer.from(ev.signature, 'base64'),
    };
    const at = new Date(input.now);

    const { rule, value: verified } = await firstAcceptingRule(rules, (r, stage) => {
      const v = verifyIdentityDocument(signed, r.config.certs_dir ?? BUNDLED_AWS_CERTS_DIR, at, this.certs);
      stage.reached(1);
      const facts = awsFacts(v);
      checkAllowList(
        r.config.allow,
        (e) => entryMismatch(e, facts, AWS_ALLOW_FIELDS),
        'aws_not_allowed',
        describe(facts),
        r.name,
      );
      return v;
    });
    const facts = { ...awsFacts(verified), aws_rule: rule.name };

    const bindingSpki = Buffer.from(ev.binding_key, 'base64url');
    if (
      !verifyBindingProof(
        bindingSpki,
        bindingMessage(input.requestId, input.spkiDer, signed.document),
        Buffer.from(ev.binding_signature, 'base64url'),
      )
    ) {
      throw new SigilError(
        'aws_binding_proof_invalid',
        `the binding key's signature over this request does not verify (${describe(facts)})`,
      );
    }
    const bindingHash = keyHash(bindingSpki);
    const instanceId = verified.doc.instanceId;
    const existing = await port.keyBinding(instanceId);
    if (existing !== undefined && existing.keyHash !== bindingHash)
      throw mismatch(instanceId, facts, existing.createdAt);
    if (existing === undefined && rule.config.first_join_within !== undefined) {
      const launched = Date.parse(verified.doc.pendingTime ?? '');
      const limitMs = rule.config.first_join_within * 1000;
      if (Number.isNaN(launched) || input.now - launched > limitMs) {
        throw new SigilError(
          'aws_document_too_old',
          `${describe(facts)} launched at ${verified.doc.pendingTime ?? '(unknown)'}; join_rule ${rule.name} allows a first join only within ${rule.config.first_join_within} s of launch (first_join_within)`,
        );
      }
    }

    return {
      bot: rule.bot,
      machineId: awsMachineId(instanceId),
      facts: { ...facts, aws_binding_key: bindingHash, aws_first_join: existing === undefined },
      joinRule: rule.name,
      canReattest: true,
      async commit(tx) {
        const bound = await tx.bindKey({ subject: instanceId, keyHash: bindingHash, rule: rule.name, facts });
        if (bound.keyHash !== bindingHash) throw mismatch(instanceId, facts, bound.createdAt);
      },
    };
  }
}

function mismatch(instanceId: string, facts: Record<string, unknown>, boundAt: number): SigilError {
  return new SigilError(
    'aws_instance_key_mismatch',
    `${describe(facts)} was bound to another binding key at its first join (${new Date(boundAt).toISOString()}); if the instance legitimately lost its key, reset the binding with: sigil ctl --data-dir <issuer-data-dir> bindings reset aws_iid ${instanceId}`,
  );
}

/** ECDSA P-256 / SHA-256 (DER) by the binding key; false (never a throw) for anything malformed. */
export function verifyBindingProof(spkiDer: Buffer, message: Buffer, signature: Buffer): boolean {
  try {
    const key = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return false;
    return cryptoVerify('sha256', message, { key, dsaEncoding: 'der' }, signature);
  } catch {
    return false;
  }
}

export const awsIidServerMethod: ServerJoinMethodEntry = {
  descriptor: awsIidDescriptor,
  ruleSchema: awsRuleSchema,
  create: (deps) => new AwsIidJoinServer(deps.caches.awsCerts),
};
