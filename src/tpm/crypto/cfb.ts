/**
 * AES in CFB mode with full-block feedback (CFB-128), as the TPM uses it for parameter
 * encryption, credential protection and duplication (Part 1 §11.4.6.3 / §C.6).
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';

function cipherName(key: Uint8Array): string {
  if (key.length !== 16 && key.length !== 24 && key.length !== 32)
    throw new TypeError(`AES key of ${key.length} bytes`);
  return `aes-${key.length * 8}-cfb`;
}

export function cfbEncrypt(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  const c = createCipheriv(cipherName(key), key, iv);
  return Buffer.concat([c.update(data), c.final()]);
}

export function cfbDecrypt(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  const d = createDecipheriv(cipherName(key), key, iv);
  return Buffer.concat([d.update(data), d.final()]);
}
