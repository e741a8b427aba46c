/**
 * KDFe: the TPM's SP 800-56A concatenation KDF for ECC secrets (Part 1 §11.4.10.3).
 *
 *   K(i) = H_hashAlg([i]₃₂ ‖ Z ‖ label ‖ 0x00 ‖ partyUInfo ‖ partyVInfo)
 *
 * Z is the x-coordinate of the ECDH shared point; used for ECC-salted sessions and for
 * MakeCredential / ActivateCredential with an ECC EK ("IDENTITY").
 */
import { createHash } from 'node:crypto';
import { nodeHashName } from './hash.js';
import { kdfLabel } from './kdfa.js';

export function kdfe(
  hashAlg: number,
  z: Uint8Array,
  label: string | Uint8Array,
  partyUInfo: Uint8Array,
  partyVInfo: Uint8Array,
  bits: number,
): Buffer {
  if (!Number.isInteger(bits) || bits <= 0) throw new TypeError(`KDFe: bad bit count ${bits}`);
  const name = nodeHashName(hashAlg);
  const bytes = Math.ceil(bits / 8);
  const lbl = kdfLabel(label);
  const out: Buffer[] = [];
  let have = 0;
  for (let i = 1; have < bytes; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    const k = createHash(name).update(counter).update(z).update(lbl).update(partyUInfo).update(partyVInfo).digest();
    out.push(k);
    have += k.length;
  }
  const result = Buffer.concat(out).subarray(0, bytes);
  if (bits % 8 !== 0) result[0] = result[0]! & ((1 << (bits % 8)) - 1);
  return Buffer.from(result);
}
