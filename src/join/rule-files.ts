/**
 * Small files a cloud or CI join rule names (a CA bundle for fetching key sets, trust anchors),
 * read when a machine joins — `sigil ctl apply` may run elsewhere — and re-read when they
 * change. An unreadable file is `join_rule_unusable` naming it (the operator's problem, retryable).
 */
import { readFileSync, statSync } from 'node:fs';
import { SigilError } from '../errors.js';

const cache = new Map<string, { mtimeMs: number; size: number; text: string }>();

export function readRuleFile(path: string, what: string): string {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new SigilError('join_rule_unusable', `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const hit = cache.get(path);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.text;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SigilError('join_rule_unusable', `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (cache.size >= 256) cache.delete(cache.keys().next().value!);
  cache.set(path, { mtimeMs: st.mtimeMs, size: st.size, text });
  return text;
}
