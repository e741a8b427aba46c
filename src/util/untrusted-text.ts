/**
 * Bounds for text a client chose (JSON keys quoted by schema errors, method names, topics,
 * request ids) before it reaches a log line or an audit row. Without them one 64 KiB request
 * with thousands of unknown keys became a ~41 KB warning line and a ~41 KB audit row
 * (issue #11 item 4). Applied where refusals are recorded, so every message source is covered
 * whatever built it.
 */

/** One quoted fragment or unbroken run of characters. */
export const MAX_FRAGMENT_CHARS = 200;
/** A whole message. */
export const MAX_MESSAGE_CHARS = 1024;

// C0 controls and DEL: no newlines or terminal escapes from a client in a log line.
const CONTROL = /[\u0000-\u001f\u007f]/g;
// '…' or "…" fragments (zod quotes unknown keys with ', JSON.stringify with "), and long runs
// without a space (an object path joined with dots, a base64 blob).
const LONG_PIECE = new RegExp(
  `'[^']{${MAX_FRAGMENT_CHARS + 1},}'|"[^"]{${MAX_FRAGMENT_CHARS + 1},}"|[^\\s'"]{${MAX_FRAGMENT_CHARS + 1},}`,
  'g',
);

/** Cut `s` to `max` characters, saying how much was dropped. */
export function capText(s: string, max: number = MAX_FRAGMENT_CHARS): string {
  const clean = s.replace(CONTROL, '?');
  return clean.length <= max ? clean : `${clean.slice(0, max)}…[+${clean.length - max} chars]`;
}

/** A message for a log line or an audit row: every fragment ≤ 200 characters, the whole ≤ ~1 KB. */
export function capMessage(message: string): string {
  const pieces = message.replace(CONTROL, '?').replace(LONG_PIECE, (piece) => {
    const q = piece[0] === "'" || piece[0] === '"' ? piece[0] : '';
    return q ? `${q}${capText(piece.slice(1, -1))}${q}` : capText(piece);
  });
  return capText(pieces, MAX_MESSAGE_CHARS);
}

/** Optional text (null stays null). */
export function capOptional(s: string | null | undefined, max: number = MAX_FRAGMENT_CHARS): string | null {
  return s === null || s === undefined ? null : capText(String(s), max);
}
