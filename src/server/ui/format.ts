/** How the fleet view writes times, durations and key storage: UTC, to the second, the same everywhere. */
import type { KeyStorage } from '../../keystore/signer.js';

/** `2026-12-05 04:27:13Z`, or an em dash for none. */
export function utc(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  return new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d{3}Z$/, 'Z');
}

/** `42s`, `17m`, `3h 5m`, `2d 4h`: the largest two units. */
export function duration(ms: number): string {
  const s = Math.floor(Math.abs(ms) / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}

/** `in 17m` / `3h 5m ago` relative to `now`. */
export function relative(ms: number | null | undefined, now: number): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  return ms >= now ? `in ${duration(ms - now)}` : `${duration(now - ms)} ago`;
}

/** Hardware-proven: the key's storage was proven by the join method (a TPM-certified key), never just claimed. */
export function keyStorageLabel(storage: KeyStorage, exportable: boolean): { text: string; proven: boolean } {
  const proven = storage !== 'software' && !exportable;
  return { text: proven ? `${storage} (hardware-proven)` : storage === 'software' ? 'software' : `${storage}`, proven };
}
