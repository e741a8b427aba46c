/**
 * The signing keys a stored SSH or JWT answer carries, checked before it is replayed: each must
 * be a key this issuer publishes now (signing, staged or retired-but-trusted: ./authorities.ts).
 *
 * Why not only the time check of ops/respond.ts (`answeredAfter`): on a shared store every issuer
 * answers from one idempotency table, and each learns of a compromise rotation at its own poll. A
 * peer that had not learned yet may sign with the stolen key *after* this issuer learned; its
 * answer is newer than this issuer's withdrawal time, so only the key it carries tells. A replayed
 * SSH answer would otherwise put the stolen CA's line into the agent's TrustedUserCAKeys or
 * known_hosts, and a JWT-SVID from the stolen key would go back to the workload.
 *
 * What is read: the SSH certificate's signature key and every CA line of the answer (compared as
 * key blobs: the comment says `next-`/`retired-` and may have changed since); the JWT's `kid`
 * from its header, or — when the token is sealed to the requester's answer key and the issuer
 * cannot read it — from the certificate record written in the same transaction as the answer
 * (`kid:<kid>`). The answer itself is sealed (../ops/answer-seal.ts); the record is not, so a
 * database writer could make a sealed stolen-key JWT look current — and replay it to the agent
 * that asked for it, nothing more (it cannot make the issuer sign).
 */
import { SigilError } from '../../errors.js';
import { parseCertificateLine } from '../../ssh/certificate.js';
import { parseAuthorizedKey } from '../../ssh/public-key.js';
import { b64u } from '../../protocol/jws.js';
import type { TxStores } from '../store/types.js';
import { publishedJwks, publishedSshCaLines, withdrawnAtFor, type CredentialAuthorities } from './authorities.js';

interface StoredResult {
  kind?: unknown;
  action?: unknown;
  serial?: unknown;
  token?: unknown;
  certificate?: unknown;
  user_ca_public_key?: unknown;
  host_ca_public_key?: unknown;
  other_user_ca_public_keys?: unknown;
  other_host_ca_public_keys?: unknown;
}

/**
 * The replay options (ops/respond.ts replayIfSeen) of a request whose answer is signed with a
 * rotatable key — a credential of `kind`, or a workload JWT-SVID (`jwt`): refuse an answer from
 * before the latest withdrawal of that kind (or before this issuer learned of it), and one that
 * carries a key no longer published. `issuer.credentials` is read at the time of each check (a key
 * reload replaces it).
 */
export function keyCheckedReplay(
  issuer: {
    credentials: CredentialAuthorities;
    now(): number;
    /** Stored answers are kept compacted (the CA PEMs they repeat replaced by a tag): ../ops/stored-answer.ts. */
    storedAnswers: { expand(stored: string): string };
  },
  kind: string,
  requestId: string,
): {
  answeredAfter?: number;
  answerCheck?: (response: string, stores: Pick<TxStores, 'certificates'>) => Promise<void>;
} {
  // Only the kinds signed with a rotatable key: a database or kubernetes certificate comes from
  // the intermediate (a review found every resent database request refused when it was checked too).
  if (kind !== 'jwt' && kind !== 'ssh_user' && kind !== 'ssh_host') return {};
  const withdrawnAt = withdrawnAtFor(issuer.credentials, kind);
  return {
    ...(withdrawnAt !== undefined ? { answeredAfter: withdrawnAt } : {}),
    answerCheck: (response, stores) =>
      assertStoredAnswerKeysPublished(
        issuer.credentials,
        stores,
        requestId,
        issuer.storedAnswers.expand(response),
        issuer.now(),
      ),
  };
}

/**
 * Refuse (`signing_key_withdrawn`) a stored `credential` or `workload` answer that carries a key
 * this issuer does not publish at `now`; other answers pass untouched.
 */
export async function assertStoredAnswerKeysPublished(
  cas: CredentialAuthorities,
  stores: Pick<TxStores, 'certificates'>,
  requestId: string,
  response: string,
  now: number,
): Promise<void> {
  const result = storedResult(response);
  if (result.kind === 'ssh_user' || result.kind === 'ssh_host') return checkSsh(cas, requestId, result, now);
  if (result.kind === 'jwt' || result.action === 'jwt') {
    const kid = tokenKid(result.token) ?? (await recordedKid(stores, result.serial));
    if (kid !== undefined && !publishedJwks(cas, now).some((k) => k.kid === kid))
      throw unpublished(requestId, `its JWT-SVID was signed by key ${kid}`);
  }
}

function storedResult(response: string): StoredResult {
  try {
    const r = (JSON.parse(response) as { result?: unknown }).result;
    if (r !== null && typeof r === 'object') return r as StoredResult;
  } catch {
    // fall through
  }
  throw new SigilError('stored_answer_invalid', 'the stored answer is not a response payload; it is not replayed');
}

function checkSsh(cas: CredentialAuthorities, requestId: string, r: StoredResult, now: number): void {
  const published = {
    user: new Set(publishedSshCaLines(cas, 'user', now).map(blobOf)),
    host: new Set(publishedSshCaLines(cas, 'host', now).map(blobOf)),
  };
  if (typeof r.certificate === 'string') {
    const signedBy = parseCertificateLine(r.certificate, 'stored_answer_invalid').signatureKey.blob.toString('base64');
    const which = r.kind === 'ssh_user' ? 'user' : 'host';
    if (!published[which].has(signedBy))
      throw unpublished(requestId, `its certificate was signed by an SSH ${which} CA key`);
  }
  const lines: Array<['user' | 'host', unknown]> = [
    ['user', r.user_ca_public_key],
    ['host', r.host_ca_public_key],
    ...listOf(r.other_user_ca_public_keys).map((l): ['user', unknown] => ['user', l]),
    ...listOf(r.other_host_ca_public_keys).map((l): ['host', unknown] => ['host', l]),
  ];
  for (const [which, line] of lines)
    if (typeof line === 'string' && !published[which].has(blobOf(line)))
      throw unpublished(requestId, `it carries an SSH ${which} CA line`);
}

const listOf = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

function blobOf(line: string): string {
  return parseAuthorizedKey(line, 'stored_answer_invalid', 'a CA line of the stored answer').blob.toString('base64');
}

/** The `kid` of a compact JWS's protected header; undefined when there is no readable token. */
function tokenKid(token: unknown): string | undefined {
  if (typeof token !== 'string') return undefined;
  try {
    const kid = (JSON.parse(b64u.decode(token.slice(0, token.indexOf('.'))).toString('utf8')) as { kid?: unknown }).kid;
    return typeof kid === 'string' ? kid : undefined;
  } catch {
    return undefined;
  }
}

async function recordedKid(stores: Pick<TxStores, 'certificates'>, serial: unknown): Promise<string | undefined> {
  if (typeof serial !== 'string') return undefined;
  const rec = await stores.certificates.get(serial);
  return rec?.spkiHash.startsWith('kid:') ? rec.spkiHash.slice(4) : undefined;
}

function unpublished(requestId: string, what: string): SigilError {
  return new SigilError(
    'signing_key_withdrawn',
    `the answer stored for request id ${requestId} is not replayed: ${what} this issuer no longer publishes (withdrawn by a compromise rotation, or retired and past its overlap); send a new request`,
  );
}
