/**
 * KDFa: the TPM's SP 800-108 counter-mode KDF with HMAC (Part 1 §11.4.10.2).
 *
 *   K(i) = HMAC_hashAlg(key, [i]₃₂ ‖ label ‖ 0x00 ‖ contextU ‖ contextV ‖ [bits]₃₂)
 *   KDFa = (K(1) ‖ K(2) ‖ …) truncated to ⌈bits/8⌉ bytes, with the excess high-order bits of
 *          the first byte cleared when `bits` is not a multiple of 8.
 *
 * Used for session keys ("ATH"), parameter encryption ("CFB"), and credential / duplication
 * protection ("STORAGE", "INTEGRITY"). Shared by the agent (sessions) and the verifier
 * (software MakeCredential).
 */
import { createHmac } from 'node:crypto';
import { nodeHashName } from './hash.js';

/** The label as the TPM uses it: its bytes followed by one 0x00 (kept once if present). */
export function kdfLabel(label: string | Uint8Array): Buffer {
  const b = typeof label === 'string' ? Buffer.from(label, 'latin1') : Buffer.from(label);
  if (b.length > 0 && b[b.length - 1] === 0) return b;
  return Buffer.concat([b, Buffer.alloc(1)]);
}

export function kdfa(
  hashAlg: number,
  key: Uint8Array,
  label: string | Uint8Array,
  contextU: Uint8Array,
  contextV: Uint8Array,
  bits: number,
): Buffer {
  if (!Number.isInteger(bits) || bits <= 0 || bits > 0xffffffff) throw new TypeError(`KDFa: bad bit count ${bits}`);
  const name = nodeHashName(hashAlg);
  const bytes = Math.ceil(bits / 8);
  const lbl = kdfLabel(label);
  const bitsBe = Buffer.alloc(4);
  bitsBe.writeUInt32BE(bits);
  const out: Buffer[] = [];
  let have = 0;
  for (let i = 1; have < bytes; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    const k = createHmac(name, key)
      .update(counter)
      .update(lbl)
      .update(contextU)
      .update(contextV)
      .update(bitsBe)
      .digest();
    out.push(k);
    have += k.length;
  }
  const result = Buffer.concat(out).subarray(0, bytes);
  if (bits % 8 !== 0) result[0] = result[0]! & ((1 << (bits % 8)) - 1);
  return Buffer.from(result);
}
