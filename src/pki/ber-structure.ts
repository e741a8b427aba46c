/**
 * A strict structural check of BER (X.690 §8) before a lenient parser sees it. asn1js, under
 * pkijs, accepts children that run past their parent's length, end-of-contents octets with a
 * non-zero length octet and similar slips; for data whose unsigned parts must not change
 * unnoticed (pkcs7.ts) every TLV has to be exactly what it says. The rules:
 *
 *  - one identifier octet (low tag numbers; the high-tag-number form is refused);
 *  - definite lengths in the shortest form (X.690 §10.1, as every DER and every producer of
 *    the BER Sigil reads writes them), at most 4 length octets;
 *  - the indefinite form (0x80) only on constructed encodings, closed by exactly 00 00;
 *  - a definite constructed encoding is exactly filled by its children;
 *  - nothing after the outermost TLV.
 */

/** Throws `fail(message)` at the first violation. Depth is bounded (≤ 64). */
export function checkBerStructure(buf: Uint8Array, fail: (message: string) => never): void {
  const end = tlv(buf, 0, buf.length, 0, fail);
  if (end !== buf.length) fail(`${buf.length - end} trailing bytes after the outermost value`);
}

/** Parse one TLV at `at`, which must end by `limit`; returns the offset just past it. */
function tlv(b: Uint8Array, at: number, limit: number, depth: number, fail: (m: string) => never): number {
  if (depth > 64) fail('nesting deeper than 64 levels');
  if (at + 2 > limit) fail(`truncated value at offset ${at}`);
  const tag = b[at]!;
  if ((tag & 0x1f) === 0x1f) fail(`high tag number form at offset ${at}`);
  const constructed = (tag & 0x20) !== 0;
  let p = at + 1;
  const first = b[p++]!;
  if (first === 0x80) {
    if (!constructed) fail(`indefinite length on a primitive value at offset ${at}`);
    if (tag === 0x00) fail(`end-of-contents where a value was expected at offset ${at}`);
    for (;;) {
      if (p + 2 > limit) fail(`indefinite-length value at offset ${at} is not closed`);
      if (b[p] === 0x00) {
        if (b[p + 1] !== 0x00) fail(`malformed end-of-contents at offset ${p}`);
        return p + 2;
      }
      p = tlv(b, p, limit, depth + 1, fail);
    }
  }
  let len = first;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n > 4) fail(`length of ${n} octets at offset ${at}`);
    if (p + n > limit) fail(`truncated length at offset ${at}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[p + i]!;
    if (b[p] === 0 || len < 0x80) fail(`non-minimal length at offset ${at}`);
    p += n;
  }
  const end = p + len;
  if (end > limit) fail(`value at offset ${at} runs past its container`);
  if (tag === 0x00) fail(`unexpected end-of-contents at offset ${at}`);
  if (constructed) {
    while (p < end) p = tlv(b, p, end, depth + 1, fail);
  }
  return end;
}
