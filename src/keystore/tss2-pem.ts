/**
 * The `TSS2 PRIVATE KEY` PEM (draft-bottomley-tpm2-keys; what tpm2-tss-engine and
 * tpm2-openssl read and write) for a key that lives in a TPM. It holds no private key, only the
 * TPM's blobs, so a workload can use the key through OpenSSL's tpm2 provider and the TPM does
 * every private operation:
 *
 *   TPMKey ::= SEQUENCE {
 *     type        OBJECT IDENTIFIER,          -- 2.23.133.10.1.3 id-loadablekey
 *     emptyAuth   [0] EXPLICIT BOOLEAN OPTIONAL,
 *     policy      [1] EXPLICIT SEQUENCE OF TPMPolicy OPTIONAL,
 *     secret      [2] EXPLICIT OCTET STRING OPTIONAL,
 *     authPolicy  [3] EXPLICIT SEQUENCE OF TPMAuthPolicy OPTIONAL,
 *     parent      INTEGER,                    -- 0x40000001: TPM_RH_OWNER, the standard SRK
 *     pubkey      OCTET STRING,               -- TPM2B_PUBLIC, u16 size prefix included
 *     privkey     OCTET STRING }              -- TPM2B_PRIVATE, u16 size prefix included
 *
 * Sigil writes emptyAuth TRUE and no policy. The reader accepts what other tools write for a
 * plain loadable key and refuses what it cannot use (a policy, an imported-key `secret`, a
 * sealed-data or importable type) rather than failing later inside the TPM.
 */
import { SigilError } from '../errors.js';
import { boolean, explicit, integer, octetString, oid, sequence, TAG } from '../pki/der.js';
import { DerReader, type DerNode } from '../pki/der-reader.js';
import { parsePem, toPem } from '../pki/pem.js';
import { tpm2bPrivate } from '../tpm/structures/basic.js';
import { marshal, unmarshal } from '../tpm/structures/codec.js';
import { tpm2bPublic } from '../tpm/structures/public.js';
import type { KeyBlob } from '../tpm/tpm.js';

export const TSS2_PEM_LABEL = 'TSS2 PRIVATE KEY';
/** id-loadablekey (TCG OID arc 2.23.133.10.1). */
export const OID_LOADABLE_KEY = '2.23.133.10.1.3';
const OID_IMPORTABLE_KEY = '2.23.133.10.1.4';
const OID_SEALED_DATA = '2.23.133.10.1.5';

export interface Tss2Key {
  /** 0x40000001 (TPM_RH_OWNER) or a persistent handle. */
  parent: number;
  blob: KeyBlob;
  /** True when the key has no authValue (Sigil's keys never do). */
  emptyAuth: boolean;
}

/** DER of TPMKey. */
export function encodeTss2Key(k: { parent: number; blob: KeyBlob }): Buffer {
  if (!Number.isInteger(k.parent) || k.parent < 0 || k.parent > 0xffffffff)
    throw new TypeError(`TSS2 key parent ${k.parent} is not a TPM handle`);
  return sequence(
    oid(OID_LOADABLE_KEY),
    explicit(0, boolean(true)),
    integer(k.parent),
    octetString(Buffer.from(marshal(tpm2bPublic, k.blob.public))),
    octetString(Buffer.from(marshal(tpm2bPrivate, k.blob.private))),
  );
}

export function writeTss2Pem(k: { parent: number; blob: KeyBlob }): string {
  return toPem(TSS2_PEM_LABEL, encodeTss2Key(k));
}

/**
 * emptyAuth as other tools write it. DER says TRUE is 0xFF (X.690 §11.1), and Sigil writes that;
 * tpm2-pytss and tpm2-tss-engine write 0x01, which BER allows (§8.2.2: any non-zero octet is
 * TRUE). Refusing their keys would protect nothing — the flag only says the key needs no
 * password — so any one-octet value is read as BER does.
 */
function readBooleanLenient(r: DerReader, n: DerNode): boolean {
  const c = r.content(r.expect(n, TAG.BOOLEAN, 'emptyAuth'));
  if (c.length !== 1) r.fail('emptyAuth: a BOOLEAN is one octet');
  return c[0] !== 0;
}

/** Parse TPMKey DER; anything Sigil cannot load is `config_invalid`, saying why. */
export function decodeTss2Key(der: Buffer): Tss2Key {
  const r = new DerReader(der, 'config_invalid', 'TSS2 PRIVATE KEY');
  const fields = r.children(r.expect(r.root(), TAG.SEQUENCE, 'TPMKey'));
  let i = 0;
  const type = r.oid(fields[i++]!, 'type');
  if (type === OID_IMPORTABLE_KEY) r.fail('an importable key (2.23.133.10.1.4) must be imported into the TPM first');
  if (type === OID_SEALED_DATA) r.fail('this is sealed data (2.23.133.10.1.5), not a key');
  if (type !== OID_LOADABLE_KEY) r.fail(`type ${type} is not a loadable key (${OID_LOADABLE_KEY})`);
  let emptyAuth = false;
  // Optional context-tagged fields come in tag order before `parent`.
  while (fields[i] !== undefined && (fields[i]!.tag & 0xe0) === 0xa0) {
    const f = fields[i++]!;
    const n = f.tag & 0x1f;
    if (n === 0) {
      const inner = r.children(f);
      if (inner.length !== 1) r.fail('emptyAuth must wrap one BOOLEAN');
      emptyAuth = readBooleanLenient(r, inner[0]!);
    } else if (n === 1 || n === 3) {
      r.fail('the key is bound to a TPM policy, which Sigil does not satisfy');
    } else if (n === 2) {
      r.fail('the key carries an import secret (it was never loaded into this TPM)');
    }
    // [4] description and later optional fields are informational.
  }
  const parentBytes = r.integerBytes(r.expect(fields[i++], TAG.INTEGER, 'parent'), 'parent');
  if (parentBytes.length > 5 || (parentBytes.length === 5 && parentBytes[0] !== 0) || (parentBytes[0]! & 0x80) !== 0)
    r.fail('parent is not a TPM handle');
  const parent = parentBytes.readUIntBE(0, parentBytes.length);
  const pub = r.content(r.expect(fields[i++], TAG.OCTET_STRING, 'pubkey'));
  const priv = r.content(r.expect(fields[i++], TAG.OCTET_STRING, 'privkey'));
  if (fields[i] !== undefined) r.fail('unexpected fields after privkey');
  let blob: KeyBlob;
  try {
    blob = { public: unmarshal(tpm2bPublic, pub), private: unmarshal(tpm2bPrivate, priv) };
  } catch (err) {
    throw new SigilError('config_invalid', `TSS2 PRIVATE KEY: the TPM blobs do not parse: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { parent, blob, emptyAuth };
}

export function readTss2Pem(pem: string): Tss2Key {
  const block = parsePem(pem, 'config_invalid').find((b) => b.label === TSS2_PEM_LABEL);
  if (!block) throw new SigilError('config_invalid', `no "${TSS2_PEM_LABEL}" block in the PEM text`);
  return decodeTss2Key(block.der);
}
