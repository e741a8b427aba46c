/**
 * The Workload API's way to the issuer (./issuer-port.ts), over the agent's own issuer link:
 * every configured transport, HTTPS or MQTT, in order, with the failover of renewals and
 * credential requests (../transports.ts IssuerLink). Each request is a `workload` operation
 * (protocol/workload-messages.ts) signed by the agent's CURRENT identity key, exactly like a
 * credential request; each answer is verified against the pinned root before anything in it is
 * used (a signed refusal over MQTT is thrown as its error), and then checked against what was
 * asked: the entry, the key of the CSR, the audiences.
 *
 * A JWT-SVID is always asked for with a fresh answer key (protocol/answer-key.ts) — required over
 * MQTT, where the broker and other agents read answers, and sent over HTTPS too, so there is one
 * code path; an answer that carries the token in clear anyway is refused.
 */
import { X509Certificate, type KeyObject } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { loadSigner, parseKeyRef, withTcti, type TpmAccesses } from '../../keystore/index.js';
import { parseCsr } from '../../pki/csr.js';
import { fromPem } from '../../pki/pem.js';
import { newAnswerKey, openWithAnswerKey } from '../../protocol/answer-key.js';
import { signJws } from '../../protocol/jws.js';
import { PROTOCOL_VERSION, TYP_REQUEST } from '../../protocol/messages.js';
import type { WorkloadRequest, WorkloadResult } from '../../protocol/workload-messages.js';
import { spiffeIdOf } from '../../pki/chain.js';
import { newRequestId } from '../../util/secret.js';
import { namedSigner } from '../named-signer.js';
import type { AgentState } from '../state/index.js';
import type { IssuerLink } from '../transports.js';
import type {
  WorkloadBundles,
  WorkloadEntry,
  WorkloadIssuerPort,
  WorkloadJwtSvid,
  WorkloadSvid,
} from './issuer-port.js';

/** The action-specific fields of a request; the envelope fields are added here. */
type Ask =
  | { action: 'entries' }
  | { action: 'x509'; entry: string; csr: string }
  | { action: 'jwt'; entry: string; audience: string[]; answer_key: ReturnType<typeof newAnswerKey>['publicJwk'] };

export interface LinkWorkloadIssuerDeps {
  /** The agent's link (it owns and closes it: an MQTT session is one per client id). */
  link: IssuerLink;
  /** The agent's identity (the signer) and pinned root. */
  state: Pick<AgentState, 'getIdentity' | 'getBundle' | 'getOutbox'>;
  now: () => number;
  /** The agent's TPM, for an identity key that lives in one (as ../credentials.ts). */
  tpmTcti?: string | undefined;
  tpm?: TpmAccesses;
}

export class LinkWorkloadIssuer implements WorkloadIssuerPort {
  readonly #d: LinkWorkloadIssuerDeps;

  constructor(deps: LinkWorkloadIssuerDeps) {
    this.#d = deps;
  }

  async fetchEntries(): Promise<WorkloadEntry[]> {
    const r = await this.#ask({ action: 'entries' });
    if (r.action !== 'entries') throw mismatch(`asked for entries, got a ${r.action} answer`);
    return r.entries.map((e) => ({
      id: e.id,
      spiffeId: e.spiffe_id,
      selectors: e.selectors,
      ttlS: e.ttl_s,
      dnsNames: e.dns_names,
      jwtAudiences: e.jwt_audiences,
    }));
  }

  async signX509(entryId: string, csrPem: string): Promise<WorkloadSvid> {
    const asked = parseCsr(csrPem).spkiDer;
    const r = await this.#ask({ action: 'x509', entry: entryId, csr: csrPem });
    if (r.action !== 'x509' || r.entry !== entryId)
      throw mismatch(`asked for the X.509-SVID of entry ${entryId}, got ${r.action} ${'entry' in r ? r.entry : ''}`);
    const leaf = new X509Certificate(fromPem(r.chain[0]!, 'CERTIFICATE', 'response_invalid'));
    // The certificate must be for the key we hold and carry the SPIFFE ID the answer names.
    if (!leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(asked))
      throw mismatch(`the X.509-SVID of entry ${entryId} certifies another key than the one requested`);
    if (spiffeIdOf(leaf) !== r.spiffe_id)
      throw mismatch(`the X.509-SVID of entry ${entryId} does not carry the SPIFFE ID ${r.spiffe_id}`);
    return { entryId, spiffeId: r.spiffe_id, chainPem: r.chain.join(''), serial: r.serial, notAfter: r.not_after };
  }

  async signJwt(entryId: string, audience: string[]): Promise<WorkloadJwtSvid> {
    const sealed = newAnswerKey();
    const r = await this.#ask({ action: 'jwt', entry: entryId, audience, answer_key: sealed.publicJwk });
    if (r.action !== 'jwt' || r.entry !== entryId)
      throw mismatch(`asked for a JWT-SVID of entry ${entryId}, got ${r.action} ${'entry' in r ? r.entry : ''}`);
    if (r.token_jwe === undefined)
      throw new SigilError(
        'response_invalid',
        'the issuer answered the JWT-SVID unsealed although this request named an answer key; not using it',
      );
    const want = [...new Set(audience)].sort();
    if (JSON.stringify([...r.audience].sort()) !== JSON.stringify(want))
      throw mismatch(`the JWT-SVID is for audience ${r.audience.join(', ')}, not ${want.join(', ')}`);
    const token = await openWithAnswerKey(r.token_jwe, sealed.privateKey as KeyObject);
    return { entryId, spiffeId: r.spiffe_id, audience: r.audience, token, expiresAt: r.expires_at };
  }

  async fetchBundles(): Promise<WorkloadBundles> {
    const r = await this.#d.link.bundle(await this.#root(), this.#d.now);
    return {
      trustDomain: r.trust_domain,
      x509RootsPem: r.roots.join(''),
      // An issuer from before issue #17 sends no JWT keys: an empty set, so X.509 still works.
      jwtJwks: JSON.stringify(r.jwt_jwks ?? { keys: [] }),
    };
  }

  async #root(): Promise<string> {
    return this.#d.state.getBundle()?.rootsPem[0] ?? (await this.#d.link.root());
  }

  /** Sign `ask` with the current identity, send it over the link, and return the verified result. */
  async #ask(ask: Ask): Promise<WorkloadResult> {
    const { state, now, link } = this.#d;
    const id = state.getIdentity();
    if (!id) throw new SigilError('not_joined', 'the agent has no identity yet; workload SVIDs wait for the join');
    if (id.notAfter <= now())
      throw new SigilError('cert_expired', 'the agent identity has expired; workload SVIDs wait for the renewal');
    // A renewal in flight may already have made this identity the previous generation at the
    // issuer (its answer lost on the way): a request signed with it now would look like a stolen
    // credential and lock the instance (server/ops/authenticate.ts signedBeforeSuccessor).
    if (state.getOutbox().length > 0)
      throw new SigilError('renewal_pending', 'an identity request is pending; workload SVIDs wait for its answer');
    const root = await this.#root();
    const requestId = newRequestId();
    const payload: WorkloadRequest = {
      v: PROTOCOL_VERSION,
      op: 'workload',
      request_id: requestId,
      timestamp: now(),
      ...namedSigner(id.chainPem),
      ...ask,
    };
    const signer = loadSigner(
      withTcti(parseKeyRef(id.keyRef), this.#d.tpmTcti),
      this.#d.tpm ? { tpm: this.#d.tpm } : {},
    );
    try {
      const x5c = id.chainPem.map((c) => fromPem(c, 'CERTIFICATE'));
      const envelope = await signJws(signer, TYP_REQUEST, payload, x5c);
      return await link.workload(envelope, requestId, root, now);
    } finally {
      signer.close?.();
    }
  }
}

const mismatch = (msg: string): SigilError => new SigilError('answer_mismatch', msg);
