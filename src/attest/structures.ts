/**
 * The TPM structures an attestation carries, between their text form (base64, as join and renew
 * messages hold them) and the codecs of src/tpm. Parsing keeps the exact bytes (Names and
 * signatures cover them), and a structure that does not parse is refused with the code of the
 * check it belongs to.
 */
import { SigilError, type ErrorCode } from '../errors.js';
import { tpmsAttest, type Tpm2bAttest } from '../tpm/structures/attest.js';
import { marshal, unmarshal } from '../tpm/structures/codec.js';
import { tpm2bPublic, type Tpm2bPublic } from '../tpm/structures/public.js';
import { tpmtSignature, type TpmtSignature } from '../tpm/structures/signature.js';
import type { SignedAttestation } from '../tpm/tpm.js';

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

function parse<T>(what: string, code: ErrorCode, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new SigilError(code, `${what} does not parse: ${detail}`);
  }
}

/** TPM2B_PUBLIC (with its size prefix), base64. */
export function parsePublic(text: string, what: string, code: ErrorCode = 'tpm_evidence_malformed'): Tpm2bPublic {
  return parse(what, code, () => unmarshal(tpm2bPublic, Buffer.from(text, 'base64')));
}

export function encodePublic(pub: Tpm2bPublic): string {
  return b64(marshal(tpm2bPublic, pub));
}

/** A TPMS_ATTEST (exact bytes) and its TPMT_SIGNATURE, parsed. */
export interface SignedAttest {
  attest: Tpm2bAttest;
  signature: TpmtSignature;
}

/** A TPMS_ATTEST and its TPMT_SIGNATURE as messages carry them, each base64. */
export interface SignedAttestText {
  attest: string;
  signature: string;
}

/**
 * A TPMS_ATTEST and its TPMT_SIGNATURE. The attest parser refuses a magic other than
 * TPM_GENERATED_VALUE (Part 2 §10.12.8), so a structure not made by a TPM fails here, with `code`.
 */
export function parseSignedAttest(w: SignedAttestText, what: string, code: ErrorCode): SignedAttest {
  const bytes = Buffer.from(w.attest, 'base64');
  const value = parse(`the ${what} TPMS_ATTEST`, code, () => unmarshal(tpmsAttest, bytes));
  const signature = parse(`the ${what} signature`, code, () =>
    unmarshal(tpmtSignature, Buffer.from(w.signature, 'base64')),
  );
  return { attest: { value, bytes }, signature };
}

export function encodeSignedAttest(a: SignedAttestation): SignedAttestText {
  return { attest: b64(a.attest.bytes), signature: b64(marshal(tpmtSignature, a.signature)) };
}
