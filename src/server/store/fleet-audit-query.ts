/**
 * The fleet view's questions to the audit log (fleet-types.ts `audit` and `activity`), for both
 * backends: the filtered, newest-first audit query with `beforeSeq` paging (served by the seq key,
 * `audit_log_at` and `audit_log (instance_id, seq)`), and the activity buckets counted in SQL.
 * Every value is a bound parameter (see fleet-query.ts).
 */
import { badQuery, checkInt, checkText, checkTime } from './fleet-checks.js';
import type { AuditQuery } from './fleet-types.js';
import { FLEET_MAX_LIMIT, type Statement } from './fleet-query.js';

export const AUDIT_DEFAULT_LIMIT = 100;
/** Shortest activity bucket (the chart's resolution; smaller ones multiply rows for nothing). */
export const MIN_BUCKET_MS = 60_000;
/** Most activity buckets one call may ask for (a week of minutes). */
export const MAX_BUCKETS = 10_080;

/** Check an audit query; returns the statement (newest first). */
export function auditStatement(q: AuditQuery, columns: string): Statement {
  const parts: string[] = [];
  const params: Array<string | number> = [];
  const limit = q.limit === undefined ? AUDIT_DEFAULT_LIMIT : checkInt('limit', q.limit, 1, FLEET_MAX_LIMIT);
  if (q.from !== undefined) {
    parts.push('at >= ?');
    params.push(checkTime('from', q.from));
  }
  if (q.to !== undefined) {
    parts.push('at < ?');
    params.push(checkTime('to', q.to));
  }
  for (const [field, col] of [
    ['actor', 'actor'],
    ['action', 'action'],
    ['outcome', 'outcome'],
    ['instanceId', 'instance_id'],
  ] as const) {
    const v = checkText(field, q[field]);
    if (v === undefined) continue;
    // Equality needs no byte-wise collation (every deterministic one agrees), and without one
    // the plain index on instance_id serves it on PostgreSQL.
    parts.push(`${col} = ?`);
    params.push(v);
  }
  if (q.beforeSeq !== undefined) {
    parts.push('seq < ?');
    params.push(checkInt('beforeSeq', q.beforeSeq, 0, Number.MAX_SAFE_INTEGER));
  }
  const where = parts.length === 0 ? '' : `WHERE ${parts.join(' AND ')}`;
  return { text: `SELECT ${columns} FROM audit_log ${where} ORDER BY seq DESC LIMIT ?`, params: [...params, limit] };
}

/**
 * Refusal codes that are an attestation check failing (errors.ts, join: tpm): what the activity
 * chart counts as an attestation failure, besides any refused `attest` action.
 */
export const ATTESTATION_FAILURE_CODES: readonly string[] = [
  'ek_invalid',
  'ek_cert_missing',
  'ek_untrusted',
  'ek_revoked',
  'ek_not_allowed',
  'ak_attributes_invalid',
  'credential_mismatch',
  'quote_invalid',
  'quote_nonce_mismatch',
  'quote_signature_invalid',
  'pcr_digest_mismatch',
  'pcr_mismatch',
  'eventlog_invalid',
  'eventlog_replay_mismatch',
  'firmware_profile_mismatch',
  'firmware_profile_unknown',
  'clock_invalid',
  'key_not_tpm_resident',
  'certify_invalid',
  'certify_key_mismatch',
  'x509_tpm_binding_invalid',
  'x509_ek_mismatch',
];

/** Check the activity window; returns the number of buckets. */
export function checkActivity(from: number, to: number, bucketMs: number): number {
  checkTime('from', from);
  checkTime('to', to);
  if (to < from) throw badQuery('to', `must not be before from (${to} < ${from})`);
  checkInt('bucketMs', bucketMs, MIN_BUCKET_MS, Number.MAX_SAFE_INTEGER);
  const first = Math.floor(from / bucketMs) * bucketMs;
  const n = to === from ? 0 : Math.ceil((to - first) / bucketMs);
  if (n > MAX_BUCKETS)
    throw badQuery('bucketMs', `makes ${n} buckets; at most ${MAX_BUCKETS} (widen the bucket or narrow the window)`);
  return n;
}

/**
 * Activity counted per bucket in SQL. The bucket number is CAST to an integer: SQLite may bind
 * the parameters as REAL, and its division would then not truncate.
 */
export function activityStatement(from: number, to: number, bucketMs: number): Statement {
  const first = Math.floor(from / bucketMs) * bucketMs;
  const codes = ATTESTATION_FAILURE_CODES.map(() => '?').join(', ');
  return {
    text:
      'SELECT CAST((at - ?) / ? AS INTEGER) AS b, ' +
      "coalesce(sum(CASE WHEN action = 'renew' AND outcome = 'ok' THEN 1 ELSE 0 END), 0) AS renewals, " +
      "coalesce(sum(CASE WHEN outcome = 'refused' THEN 1 ELSE 0 END), 0) AS refusals, " +
      `coalesce(sum(CASE WHEN outcome = 'refused' AND (action = 'attest' OR code IN (${codes})) THEN 1 ELSE 0 END), 0) ` +
      'AS attestation_failures ' +
      'FROM audit_log WHERE at >= ? AND at < ? GROUP BY 1',
    params: [first, bucketMs, ...ATTESTATION_FAILURE_CODES, from, to],
  };
}

/** The buckets of [from, to) with the counted ones filled in (empty buckets are zero). */
export function activityBuckets(
  from: number,
  bucketMs: number,
  n: number,
  rows: Array<{ b: number; renewals: number; refusals: number; attestation_failures: number }>,
): Array<{ start: number; renewals: number; refusals: number; attestationFailures: number }> {
  const first = Math.floor(from / bucketMs) * bucketMs;
  const out = Array.from({ length: n }, (_, i) => ({
    start: first + i * bucketMs,
    renewals: 0,
    refusals: 0,
    attestationFailures: 0,
  }));
  for (const r of rows) {
    const b = out[Number(r.b)];
    if (!b) continue;
    b.renewals = Number(r.renewals);
    b.refusals = Number(r.refusals);
    b.attestationFailures = Number(r.attestation_failures);
  }
  return out;
}
