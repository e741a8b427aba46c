/**
 * Files a join rule names (CA bundles, CRLs, trust anchors, key-set fallbacks), read when a
 * machine joins — `sigil ctl apply` may run elsewhere — and re-read when they change: each is
 * cached by path, modification time and size, so replacing a CRL or a CA bundle takes effect on
 * the next join without a restart. An unreadable file is `join_rule_unusable` naming it (the
 * operator's problem, retryable).
 */
import { readFileSync, statSync } from 'node:fs';
import { SigilError } from '../errors.js';

interface Entry<T> {
  mtimeMs: number;
  size: number;
  value: T;
}

/** One cache per kind of content; `load` turns the file's bytes into it (and may throw). */
export type RuleFileCache<T> = Map<string, Entry<T>>;

/** Bound the caches: rules name a handful of files, but paths come from policy documents. */
const MAX_ENTRIES = 256;

function unreadable(path: string, what: string, e: unknown): SigilError {
  return new SigilError(
    'join_rule_unusable',
    `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
  );
}

/** `cache` undefined: read and load the file now, keep nothing. */
export function cachedRuleFile<T>(
  cache: RuleFileCache<T> | undefined,
  path: string,
  what: string,
  load: (bytes: Buffer) => T,
): T {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw unreadable(path, what, e);
  }
  const hit = cache?.get(path);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.value;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw unreadable(path, what, e);
  }
  const value = load(bytes);
  if (cache === undefined) return value;
  if (cache.size >= MAX_ENTRIES) cache.delete(cache.keys().next().value!);
  cache.set(path, { mtimeMs: st.mtimeMs, size: st.size, value });
  return value;
}

/** A rule file as text (UTF-8), cached in the issuer's `cache` (join/caches.ts). */
export function readRuleFile(cache: RuleFileCache<string> | undefined, path: string, what: string): string {
  return cachedRuleFile(cache, path, what, (bytes) => bytes.toString('utf8'));
}
