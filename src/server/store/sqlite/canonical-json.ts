/**
 * Canonical JSON for the store layer: object keys sorted recursively (by UTF-16 code units, as
 * `Array.prototype.sort` and RFC 8785 §3.2.3 order them), no whitespace. The audit chain hashes
 * this form, so it is part of the on-disk format: changing it breaks `verify()` of old rows.
 *
 * Values follow `JSON.stringify`: `toJSON()` is honoured, `undefined`/functions are dropped from
 * objects and become `null` in arrays, non-finite numbers become `null`.
 */
export function canonicalJson(value: unknown): string {
  const out = encode(value);
  // Only a top-level undefined/function has no JSON form; store it as null rather than "undefined".
  return out ?? 'null';
}

function encode(value: unknown): string | undefined {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON: () => unknown }).toJSON();
  }
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) {
    return '[' + value.map((v) => encode(v) ?? 'null').join(',') + ']';
  }
  const obj = value as Record<string, unknown>;
  const parts: string[] = [];
  for (const key of Object.keys(obj).sort()) {
    const v = encode(obj[key]);
    if (v !== undefined) parts.push(JSON.stringify(key) + ':' + v);
  }
  return '{' + parts.join(',') + '}';
}
