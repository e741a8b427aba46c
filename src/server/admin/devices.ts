/**
 * Device manifests: JSON Lines written by the factory (one device per line), imported with
 * `sigil ctl devices import manifest.jsonl [--rule NAME]` so that join rules with
 * `registered_only: true` admit exactly those devices.
 *
 *   {"serial":"GW-000123","idevid_fingerprint":"sha256:…","ek_public_hash":"sha256:…",
 *    "ek_cert_serial":"…","ek_cert_issuer":"…","provisioned_at":"2025-01-01T00:00:00Z"}
 *
 * Required: `serial` and `idevid_fingerprint` (SHA-256 of the IDevID certificate DER, as
 * `sha256:<hex>`, bare hex, or openssl's colon form). Other fields are kept with the record.
 * Import is all or nothing: every line is checked first, and any malformed or conflicting line
 * is reported with its line number and nothing is written. Re-importing the same manifest
 * changes nothing (idempotent); importing it with another --rule moves the devices.
 */
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import type { Stores } from '../store/types.js';

const fingerprint = z
  .string()
  .transform((s) =>
    s
      .trim()
      .replace(/^sha256:/i, '')
      .replace(/:/g, '')
      .toLowerCase(),
  )
  .refine((s) => /^[0-9a-f]{64}$/.test(s), 'must be a SHA-256 fingerprint (sha256:<64 hex>, 64 hex, or AA:BB:… form)')
  .transform((s) => `sha256:${s}`);

export const manifestLineSchema = z.looseObject({
  serial: z.string().min(1).max(128),
  idevid_fingerprint: fingerprint,
  ek_public_hash: fingerprint.optional(),
});

export interface ImportResult {
  lines: number;
  created: number;
  updated: number;
  unchanged: number;
  rule: string | null;
}

/** Most line errors listed in the refusal; the count says how many there were. */
const MAX_LISTED = 20;

export async function importDevices(
  stores: Stores,
  text: string,
  opts: { rule?: string; now: number; source?: string },
): Promise<ImportResult> {
  const rule = opts.rule ?? null;
  if (rule !== null) {
    const r = await stores.resources.get('join_rule', rule);
    if (!r) throw new SigilError('not_found', `join_rule "${rule}" does not exist`);
    if (r.spec.method !== 'x509')
      throw new SigilError('bad_request', `join_rule "${rule}" uses method ${String(r.spec.method)}, not x509`);
  }
  const errors: Array<{ line: number; message: string }> = [];
  const devices = new Map<string, { line: number; rec: z.infer<typeof manifestLineSchema> }>();
  let lines = 0;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = i + 1;
    if (raw.trim() === '') continue;
    lines++;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      errors.push({ line, message: 'not a JSON object' });
      continue;
    }
    const parsed = manifestLineSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      errors.push({ line, message: `${issue.path.join('.') || '(line)'}: ${issue.message}` });
      continue;
    }
    const rec = parsed.data;
    const dup = devices.get(rec.idevid_fingerprint);
    if (dup && (dup.rec.serial !== rec.serial || dup.rec.ek_public_hash !== rec.ek_public_hash)) {
      errors.push({
        line,
        message: `idevid_fingerprint ${rec.idevid_fingerprint} is also on line ${dup.line} with another serial or EK`,
      });
      continue;
    }
    const existing = await stores.devices.getByFingerprint(rec.idevid_fingerprint);
    if (existing && (existing.serial !== rec.serial || existing.ekPublicHash !== (rec.ek_public_hash ?? null))) {
      errors.push({
        line,
        message: `idevid_fingerprint ${rec.idevid_fingerprint} is already registered as device ${existing.serial}${existing.ekPublicHash ? ` (EK ${existing.ekPublicHash})` : ''}`,
      });
      continue;
    }
    devices.set(rec.idevid_fingerprint, { line, rec });
  }
  const where = opts.source ?? 'manifest';
  if (errors.length > 0) {
    const listed = errors
      .slice(0, MAX_LISTED)
      .map((e) => `line ${e.line}: ${e.message}`)
      .join('; ');
    const more = errors.length > MAX_LISTED ? `; … and ${errors.length - MAX_LISTED} more` : '';
    throw new SigilError(
      'manifest_invalid',
      `${where}: ${errors.length} of ${lines} lines are invalid, nothing was imported: ${listed}${more}`,
    );
  }
  if (lines === 0) throw new SigilError('manifest_invalid', `${where}: no device lines`);
  const counts = { created: 0, updated: 0, unchanged: 0 };
  await stores.withWriteTx(async (tx) => {
    for (const { rec } of devices.values()) {
      const r = await tx.devices.put({
        rule,
        serial: rec.serial,
        ekPublicHash: rec.ek_public_hash ?? null,
        idevidFingerprint: rec.idevid_fingerprint,
        manifest: rec,
        importedAt: opts.now,
      });
      counts[r]++;
    }
    if (counts.created + counts.updated > 0) {
      await tx.audit.append(
        { action: 'devices_import', outcome: 'ok', actor: 'admin', details: { source: where, rule, lines, ...counts } },
        opts.now,
      );
    }
  });
  return { lines, ...counts, rule };
}
