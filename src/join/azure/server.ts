/**
 * The issuer half of the azure join (wire.ts describes the two rounds).
 *
 * Round 1 asks for a challenge. Round 2 gets it from the host (join/challenge.ts), then per rule, in name
 * order: the attested document's signature and signer chain (verify.ts), the nonce derived from
 * the challenge, the document's validity window, the managed identity token when the rule has
 * a managed_identity block (signature via Microsoft's key set, issuer of the token's tenant,
 * audience, and the same subscription as the document), then the allow list. The host uses
 * the challenge up inside the issuing transaction.
 *
 * What the managed identity token adds, and its limit: the attested document names the VM and
 * its subscription, not its tenant or resource group; the token's `tid` and `xms_mirid`
 * (/subscriptions/…/resourcegroups/<rg>/providers/…) do. For a system-assigned identity that
 * resource id is the VM itself; for a user-assigned one it is the identity's, so its resource
 * group is the identity's. Nothing in either document links the token to this very VM beyond
 * the subscription — checking that would need the Azure API (docs/join-azure.md).
 *
 * Stable machine id: `azure-<vmId>`.
 */
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import { checkAllowList, entryMismatch } from '../allow-match.js';
import type { JoinCaches } from '../caches.js';
import { answeredChallenge, MAX_CHALLENGE_TTL_MS } from '../challenge.js';
import { audienceOf, verifyJwt } from '../jwt-verify.js';
import type { JoinAttestPort, JoinRule } from '../port.js';
import type { ServerJoinMethodEntry } from '../registry.js';
import { firstAcceptingRule } from '../rule-eval.js';
import { readRuleFile } from '../rule-files.js';
import type { AttestInput, Attested, ChallengeRequired, JoinMethodServer } from '../types.js';
import { parseCert, type ParsedCert } from '../x509-cert.js';
import { readCaFile } from '../trust-files.js';
import { formatName } from '../../pki/name-reader.js';
import { azureDescriptor } from './descriptor.js';
import { AZURE_ALLOW_FIELDS, azureRuleSchema, type AzureRule } from './rule.js';
import { verifyAttestedDocument, type VerifiedAttested } from './verify.js';
import {
  azureAnswerSchema,
  azureHelloSchema,
  azureMachineId,
  DEFAULT_MI_RESOURCE,
  imdsNonce,
  isAnswer,
  parseImdsTime,
} from './wire.js';

export const AZURE_METHOD = 'azure';
export const DEFAULT_SIGNER_DOMAINS = ['metadata.azure.com'] as const;
export const MICROSOFT_JWKS_URL = 'https://login.microsoftonline.com/common/discovery/v2.0/keys';
const DEFAULT_SKEW_S = 300;

export class AzureJoinServer implements JoinMethodServer {
  readonly name = AZURE_METHOD;

  constructor(private readonly caches: JoinCaches) {}

  async attest(input: AttestInput, port: JoinAttestPort): Promise<Attested | ChallengeRequired> {
    const rules = await port.rules<AzureRule>();
    if (rules.length === 0)
      throw new SigilError(
        'azure_no_rule',
        'no join_rule with method azure exists on this issuer (sigil ctl --data-dir <issuer-data-dir> apply -f a rule with azure.ca_files and azure.allow)',
      );
    if (!isAnswer(input.evidence)) {
      parseWith(azureHelloSchema, input.evidence, 'azure_evidence_malformed', 'azure evidence');
      return { challenge: { ttlMs: MAX_CHALLENGE_TTL_MS } };
    }
    const ans = parseWith(azureAnswerSchema, input.evidence, 'azure_evidence_malformed', 'azure challenge answer');
    const ch = answeredChallenge(input);
    const nonce = imdsNonce(ch.nonce);
    const der = Buffer.from(ans.document, 'base64');
    const sent = (ans.intermediates ?? []).map((b, i) =>
      parseCert(Buffer.from(b, 'base64'), `sent intermediate ${i + 1}`, 'azure_evidence_malformed'),
    );

    const { rule, value: facts } = await firstAcceptingRule(rules, async (r, stage) => {
      const v = verifyAttestedDocument(der, trustFor(this.caches, r, sent, new Date(input.now)));
      stage.reached(1);
      const f = documentFacts(v);
      checkFreshness(v, nonce, input.now, r.config.skew ?? DEFAULT_SKEW_S);
      stage.reached(2);
      const who = `VM ${String(f.azure_vm_id)} (subscription ${String(f.azure_subscription_id)})`;
      // The document's own facts first: a rule for another subscription is not the one to ask for a token.
      checkAllowList(
        r.config.allow,
        (e) => entryMismatch({ subscription_id: e.subscription_id, vm_id: e.vm_id }, f, AZURE_ALLOW_FIELDS),
        'azure_not_allowed',
        who,
        r.name,
      );
      stage.reached(3);
      if (r.config.managed_identity !== undefined) {
        if (ans.identity_token === undefined)
          throw new SigilError(
            'azure_token_required',
            `join_rule ${r.name} needs a managed identity token (the VM needs a managed identity, and the agent managed_identity: true)`,
          );
        Object.assign(f, await identityFacts(this.caches, r, ans.identity_token, f, input.now));
      }
      stage.reached(4);
      checkAllowList(r.config.allow, (e) => entryMismatch(e, f, AZURE_ALLOW_FIELDS), 'azure_not_allowed', who, r.name);
      return f;
    });

    return {
      bot: rule.bot,
      machineId: azureMachineId(String(facts.azure_vm_id)),
      facts: { ...facts, azure_rule: rule.name },
      joinRule: rule.name,
      canReattest: true,
    };
  }
}

function trustFor(
  caches: JoinCaches,
  r: JoinRule<AzureRule>,
  sent: ParsedCert[],
  at: Date,
): Parameters<typeof verifyAttestedDocument>[1] {
  const ca = (f: string): ParsedCert[] => readCaFile(caches.trustFiles, f);
  return {
    anchors: r.config.ca_files.flatMap(ca),
    intermediates: [...(r.config.intermediate_files ?? []).flatMap(ca), ...sent],
    signerDomains: r.config.signer_domains ?? DEFAULT_SIGNER_DOMAINS,
    at,
  };
}

function documentFacts(v: VerifiedAttested): Record<string, unknown> {
  return {
    azure_vm_id: v.doc.vmId.toLowerCase(),
    azure_subscription_id: v.doc.subscriptionId.toLowerCase(),
    ...(v.doc.sku ? { azure_sku: v.doc.sku } : {}),
    azure_document_created: v.doc.timeStamp.createdOn,
    azure_signer: formatName(v.signer.subject),
  };
}

/** The nonce proves the document was made for this challenge; the window, that it is current. */
export function checkFreshness(v: VerifiedAttested, nonce: string, now: number, skewS: number): void {
  if (v.doc.nonce !== nonce)
    throw new SigilError(
      'azure_nonce_mismatch',
      `the attested document carries nonce ${JSON.stringify(v.doc.nonce)}, not the challenge's ${nonce} (a stale or replayed document; IMDS may have served a cached one — join again)`,
    );
  const created = parseImdsTime(v.doc.timeStamp.createdOn);
  const expires = parseImdsTime(v.doc.timeStamp.expiresOn);
  if (created === undefined || expires === undefined)
    throw new SigilError(
      'azure_evidence_malformed',
      'the attested document timestamps are not in IMDS format (MM/DD/YY HH:MM:SS ±hhmm)',
    );
  const skewMs = skewS * 1000;
  if (now < created - skewMs || now > expires + skewMs) {
    throw new SigilError(
      'azure_document_expired',
      `the attested document is valid ${new Date(created).toISOString()} … ${new Date(expires).toISOString()}, and the issuer's time is ${new Date(now).toISOString()} (skew ${skewS} s)`,
    );
  }
}

const MIRID_RE = /^\/subscriptions\/([0-9a-f-]{36})\/resourcegroups\/([^/]+)\/providers\//i;
const trimSlash = (s: string): string => s.replace(/\/+$/, '');

async function identityFacts(
  caches: JoinCaches,
  r: JoinRule<AzureRule>,
  token: string,
  f: Record<string, unknown>,
  now: number,
): Promise<Record<string, unknown>> {
  const mi = r.config.managed_identity!;
  const v = await verifyJwt(token, {
    keys: {
      url: mi.jwks_url ?? MICROSOFT_JWKS_URL,
      ca: mi.ca_file !== undefined ? readRuleFile(caches.ruleText, mi.ca_file, 'CA file') : undefined,
    },
    cache: caches.keySets,
    algorithms: ['RS256'],
    now,
    skewS: r.config.skew ?? DEFAULT_SKEW_S,
  });
  const tid = typeof v.claims.tid === 'string' ? v.claims.tid.toLowerCase() : '';
  const issuers = [`https://sts.windows.net/${tid}/`, `https://login.microsoftonline.com/${tid}/v2.0`];
  if (!/^[0-9a-f-]{36}$/.test(tid) || !issuers.includes(String(v.claims.iss).toLowerCase())) {
    throw new SigilError(
      'jwt_issuer_mismatch',
      `the managed identity token's issuer ${JSON.stringify(v.claims.iss)} is not Microsoft Entra ID for its tenant ${JSON.stringify(v.claims.tid ?? null)}`,
    );
  }
  const audience = mi.audience ?? DEFAULT_MI_RESOURCE;
  const aud = audienceOf(v.claims);
  if (!aud.some((a) => trimSlash(a) === trimSlash(audience)))
    throw new SigilError(
      'jwt_audience_mismatch',
      `the managed identity token is for ${JSON.stringify(aud)}, not ${audience} (join_rule ${r.name})`,
    );
  const mirid = typeof v.claims.xms_mirid === 'string' ? v.claims.xms_mirid : '';
  const m = MIRID_RE.exec(mirid);
  if (!m)
    throw new SigilError(
      'azure_token_mismatch',
      'the token has no managed identity resource id (xms_mirid): it is not a managed identity token',
    );
  if (m[1]!.toLowerCase() !== f.azure_subscription_id) {
    throw new SigilError(
      'azure_token_mismatch',
      `the managed identity belongs to subscription ${m[1]}, the attested VM to ${String(f.azure_subscription_id)}`,
    );
  }
  return { azure_tenant_id: tid, azure_resource_group: m[2]!.toLowerCase(), azure_identity: mirid };
}

export const azureServerMethod: ServerJoinMethodEntry = {
  descriptor: azureDescriptor,
  ruleSchema: azureRuleSchema,
  create: (deps) => new AzureJoinServer(deps.caches),
};
