/**
 * Names (Part 1 §16): how the TPM identifies an entity in cpHash, policies and attestations.
 *
 *   object or NV index: nameAlg (u16) ‖ H_nameAlg(public area bytes)
 *   PCR, session, permanent handle: the handle's 4 bytes
 *
 * The public area bytes must be the exact marshaled TPMT_PUBLIC / TPMS_NV_PUBLIC.
 */
import { TPM_HT, handleType } from './constants.js';
import { hash } from './crypto/hash.js';
import { marshal } from './structures/codec.js';
import type { Sized } from './structures/codec.js';
import { tpmsNvPublic } from './structures/nv.js';
import type { TpmsNvPublic } from './structures/nv.js';
import { tpmtPublic } from './structures/public.js';
import type { TpmtPublic } from './structures/public.js';

/** Name = nameAlg ‖ H_nameAlg(publicBytes). */
export function nameFromPublicBytes(nameAlg: number, publicBytes: Uint8Array): Uint8Array {
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(nameAlg);
  return Buffer.concat([alg, hash(nameAlg, publicBytes)]);
}

/** The Name of an object from its public area (exact bytes when known). */
export function objectName(pub: TpmtPublic | Sized<TpmtPublic>): Uint8Array {
  if ('bytes' in pub && 'value' in pub) return nameFromPublicBytes(pub.value.nameAlg, pub.bytes);
  return nameFromPublicBytes(pub.nameAlg, marshal(tpmtPublic, pub));
}

/** The Name of an NV index from its public area (exact bytes when known). */
export function nvName(pub: TpmsNvPublic | Sized<TpmsNvPublic>): Uint8Array {
  if ('bytes' in pub && 'value' in pub) return nameFromPublicBytes(pub.value.nameAlg, pub.bytes);
  return nameFromPublicBytes(pub.nameAlg, marshal(tpmsNvPublic, pub));
}

/** The Name of a handle whose Name is the handle itself (PCR, session, permanent). */
export function handleName(handle: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(handle >>> 0);
  return b;
}

/** Whether a handle's Name is the handle itself, i.e. needs no public area to compute. */
export function isSelfNamed(handle: number): boolean {
  const ht = handleType(handle);
  return ht !== TPM_HT.TRANSIENT && ht !== TPM_HT.PERSISTENT && ht !== TPM_HT.NV_INDEX;
}

/**
 * Qualified Name (Part 1 §16.6): QN(B) = nameAlg ‖ H(QN(parent) ‖ Name(B)); a hierarchy's
 * QN is its handle.
 */
export function qualifiedName(parentQualifiedName: Uint8Array, name: Uint8Array, nameAlg: number): Uint8Array {
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(nameAlg);
  return Buffer.concat([alg, hash(nameAlg, parentQualifiedName, name)]);
}
