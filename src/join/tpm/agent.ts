/**
 * The agent half of the tpm join (wire.ts describes the two rounds). Round 1 reads the EK
 * (certificate from its NV index, public area from its persistent handle or the profile
 * template) and creates a fresh attestation key under the SRK; round 2 activates the
 * issuer's credential with the EK and the AK, quotes the requested PCRs with the issuer's
 * nonce, and has the AK certify the identity key with the same nonce.
 *
 * The TPM is opened once per round — evidence, CSR and envelope signatures on one connection
 * ({@link TpmJoinAgent.session}) — and closed before the network wait (keystore/tpm-access.ts);
 * transient objects are flushed as soon as they are not needed — swtpm and TPMs without a
 * resource manager hold only three.
 *
 * The identity key must be a {@link TpmSigner} in the same TPM; the agent finds it by the SPKI
 * of the CSR through `identityKey`, since one method object serves every join of the agent.
 */
import { readFileSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { encodePublic, encodeSignedAttest } from '../../attest/structures.js';
import { SigilError } from '../../errors.js';
import { OWNER_PARENT, type TpmAccess } from '../../keystore/tpm-access.js';
import type { TpmSigner } from '../../keystore/tpm.js';
import { parseWith, type JoinChallenge } from '../../protocol/messages.js';
import { TPM_ST } from '../../tpm/constants.js';
import { hash } from '../../tpm/crypto/hash.js';
import type { EkKind } from '../../tpm/ek.js';
import type { TpmtPublic } from '../../tpm/structures/public.js';
import type { KeyBlob, PcrValue, SignedAttestation, Tpm, TpmKey } from '../../tpm/tpm.js';
import { activateCredential, akTemplate, readAgentEk } from '../tpm-activation.js';
import type { EvidenceContext, JoinMethodAgent } from '../types.js';
import { KeptTpmState } from './kept-state.js';
import {
  bankName,
  MAX_EVENT_LOG_GZ_BYTES,
  PCR_BANK_ALGS,
  tpmChallengeDataSchema,
  type PcrSelectionWire,
  type TpmAnswer,
  type TpmEvidence,
} from './wire.js';

/** Where Linux exposes the firmware's TCG event log (root only). */
export const DEFAULT_EVENT_LOG = '/sys/kernel/security/tpm0/binary_bios_measurements';

export { akTemplate };

export interface TpmJoinAgentOptions {
  /**
   * The holder's access to the TPM (TCTI e.g. `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`):
   * the agent's, the same object its identity keys in this TPM use.
   */
  tpm: TpmAccess;
  /** The identity key a join's CSR is for, by its SPKI (a TpmSigner made in this TPM). */
  identityKey: (spkiDer: Buffer) => TpmSigner | undefined;
  /** Which EK: `auto` (default) takes the first EK certificate found (RSA, ECC P-256, ECC P-384), else the RSA EK. */
  ek?: EkKind | 'auto';
  /** The TCG event log file; default {@link DEFAULT_EVENT_LOG} when readable; false: never send one. */
  eventLog?: string | false;
  /** Use this AK (a blob under the SRK, e.g. kept from an earlier join) instead of creating one per join. */
  ak?: KeyBlob;
  /** Template of a new AK (tests of the issuer's AK checks); default {@link akTemplate}. */
  akTemplate?: TpmtPublic;
  endorsementAuth?: Uint8Array;
}

interface Pending {
  ak: KeyBlob;
  ekKind: EkKind;
  /** Set by the answer when the issuer's challenge said `attest_renewals` (issue #16). */
  attestation?: JoinAttestation;
}

/** What a join leaves for later attestations: the selection, and the join quote's clock counters. */
export interface JoinAttestation {
  pcrSelection: PcrSelectionWire;
  resetCount: number;
  restartCount: number;
}

/** Round-1 state kept for round 2, by request id; a few joins at most are ever in flight. */
const MAX_PENDING = 8;

export class TpmJoinAgent implements JoinMethodAgent {
  readonly name = 'tpm';
  /** The EK outlives every identity: the agent re-attests by itself after expiry or a reboot. */
  readonly canReattest = true;
  readonly #opts: TpmJoinAgentOptions;
  readonly #pending = new Map<string, Pending>();
  /** The AK and attestation state this agent keeps in its settings, parsed once per stored text. */
  readonly kept = new KeptTpmState();
  #log: { stamp: string; b64: string | undefined } | undefined;

  constructor(opts: TpmJoinAgentOptions) {
    this.#opts = opts;
  }

  get tcti(): string {
    return this.#opts.tpm.tcti;
  }

  /**
   * The AK of a join (by request id), or of the latest one. The issuer records its public area;
   * renewals attest their new key with it (key-attestation.ts), so the agent keeps the blob.
   */
  attestationKey(requestId?: string): KeyBlob | undefined {
    if (requestId !== undefined) return this.#pending.get(requestId)?.ak;
    return [...this.#pending.values()].at(-1)?.ak;
  }

  /**
   * A join's selection and counters, when its rule wants renewals to re-attest (issue #16); the
   * agent keeps them with the AK (fresh-evidence.ts). Undefined: the rule names no profile.
   */
  joinAttestation(requestId: string): JoinAttestation | undefined {
    return this.#pending.get(requestId)?.attestation;
  }

  /** The TPM access the method quotes with (the agent's, shared with its identity keys). */
  get access(): TpmAccess {
    return this.#opts.tpm;
  }

  private identity(spkiDer: Buffer): TpmSigner {
    const key = this.#opts.identityKey(spkiDer);
    if (!key || !key.publicKeySpki().equals(spkiDer)) {
      throw new SigilError(
        'config_invalid',
        'the tpm join needs the identity key in the TPM (key_storage: tpm); the CSR key is not a TPM key this agent made',
      );
    }
    return key;
  }

  /** One TPM connection per round: the identity key's signatures and the evidence share it. */
  session<T>(fn: () => Promise<T>): Promise<T> {
    return this.#opts.tpm.session(fn);
  }

  async evidence(ctx: EvidenceContext): Promise<Record<string, unknown>> {
    const identity = this.identity(ctx.spkiDer);
    const access = this.#opts.tpm;
    const want = this.#opts.ek ?? 'auto';
    return access.run(async (tpm) => {
      const { cert, kind: ekKind, public: ekPublic } = await readAgentEk(tpm, want, this.ekAuth());
      const ak =
        this.#opts.ak ??
        (await access.withParent(tpm, OWNER_PARENT, (srk) => tpm.create(srk, this.#opts.akTemplate ?? akTemplate())));
      this.remember(ctx.requestId, { ak, ekKind });
      const ev: TpmEvidence = {
        ...(cert ? { ek_cert: Buffer.from(cert.der).toString('base64') } : {}),
        ek_public: encodePublic(ekPublic),
        ak_public: encodePublic(ak.public),
        key_public: encodePublic(identity.blob.public),
      };
      return ev;
    });
  }

  async respond(challenge: JoinChallenge, ctx: EvidenceContext): Promise<Record<string, unknown>> {
    if (challenge.method !== this.name)
      throw new SigilError('response_invalid', `the issuer sent a ${challenge.method} challenge to a tpm join`);
    const data = parseWith(tpmChallengeDataSchema, challenge.data, 'response_invalid', 'tpm challenge');
    const pending = this.#pending.get(ctx.requestId);
    if (!pending)
      throw new SigilError(
        'response_invalid',
        'a tpm challenge arrived for a join this agent did not start (no attestation key for its request id)',
      );
    const identity = this.identity(ctx.spkiDer);
    const nonce = Buffer.from(challenge.nonce, 'base64url');
    const eventLog = this.eventLog();
    const access = this.#opts.tpm;
    return access.run(async (tpm) => {
      const loaded = await access.withParent(tpm, OWNER_PARENT, (srk) => tpm.load(srk, pending.ak));
      return tpm.withTransient(loaded, async (ak) => {
        const activated = await activateCredential(tpm, ak, pending.ekKind, data.credential, this.ekAuth());
        const { quote, values } = await quoteWithValues(tpm, ak, nonce, data.pcr_selection);
        if (data.attest_renewals) {
          const clock = quote.attest.value.clockInfo;
          pending.attestation = {
            pcrSelection: data.pcr_selection,
            resetCount: clock.resetCount,
            restartCount: clock.restartCount,
          };
        }
        const certify = await identity.loadWith(tpm, (key) => tpm.certify(key, ak, nonce));
        const answer: TpmAnswer = {
          challenge_id: challenge.challenge_id,
          activated: Buffer.from(activated).toString('base64'),
          quote: encodeSignedAttest(quote),
          pcr_values: values.map((v) => ({
            bank: bankName(v.hash)!,
            pcr: v.pcr,
            digest: Buffer.from(v.digest).toString('hex'),
          })),
          ...(eventLog !== undefined ? { event_log: eventLog } : {}),
          certify: encodeSignedAttest(certify),
        };
        return answer;
      });
    });
  }

  private ekAuth(): { endorsementAuth?: Uint8Array } {
    return this.#opts.endorsementAuth ? { endorsementAuth: this.#opts.endorsementAuth } : {};
  }

  private remember(requestId: string, p: Pending): void {
    this.#pending.delete(requestId);
    this.#pending.set(requestId, p);
    while (this.#pending.size > MAX_PENDING) this.#pending.delete(this.#pending.keys().next().value!);
  }

  /**
   * The event log, gzip'd and base64'd; undefined when there is none (or it is too large to
   * send). The firmware log only changes at boot, so the encoding is kept while the file's size
   * and mtime stay the same.
   */
  eventLog(): string | undefined {
    if (this.#opts.eventLog === false) return undefined;
    const path = this.#opts.eventLog ?? DEFAULT_EVENT_LOG;
    let raw: Buffer;
    let stamp: string;
    try {
      const st = statSync(path);
      stamp = `${path}:${st.size}:${st.mtimeMs}`;
      if (this.#log?.stamp === stamp) return this.#log.b64;
      raw = readFileSync(path);
    } catch (err) {
      // The default path is absent without a TPM driver and root-only with one: no log then.
      if (this.#opts.eventLog === undefined) return undefined;
      throw new SigilError(
        'config_invalid',
        `cannot read the TPM event log ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    const gz = gzipSync(raw);
    // Too large for a request: the issuer judges the PCRs alone (a profile may require the log).
    const b64 = gz.length > MAX_EVENT_LOG_GZ_BYTES ? undefined : gz.toString('base64');
    this.#log = { stamp, b64 };
    return b64;
  }
}

/**
 * PCR_Read then Quote over the same selection. The values are the quote's when their digest
 * equals the quoted one; a PCR extended in between makes them differ, and the pair is taken
 * again (a few times at most).
 */
export async function quoteWithValues(
  tpm: Tpm,
  ak: TpmKey,
  nonce: Uint8Array,
  selection: PcrSelectionWire,
): Promise<{ quote: SignedAttestation; values: PcrValue[] }> {
  const banks = selection.map((s) => ({ hash: PCR_BANK_ALGS[s.bank], pcrs: s.pcrs }));
  for (let attempt = 0; ; attempt++) {
    const read = await tpm.pcrRead(banks);
    // The quote hashes bank by bank in selection order, PCRs ascending (Part 3 §18.4).
    const rank = (v: PcrValue): number => banks.findIndex((b) => b.hash === v.hash) * 256 + v.pcr;
    const values = [...read.values].sort((x, y) => rank(x) - rank(y));
    const quote = await tpm.quote(ak, nonce, banks);
    const a = quote.attest.value;
    const sigHash = (quote.signature as { hash?: number }).hash;
    if (a.type !== TPM_ST.ATTEST_QUOTE || sigHash === undefined)
      throw new SigilError('tpm_error', 'the TPM returned something other than a signed quote');
    const digest = hash(sigHash, ...values.map((v) => v.digest));
    if (Buffer.from(digest).equals(Buffer.from(a.attested.pcrDigest))) return { quote, values };
    if (attempt >= 3)
      throw new SigilError('tpm_unavailable', 'the PCRs kept changing between PCR_Read and Quote; try again');
  }
}
