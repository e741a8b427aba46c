/**
 * Sigil's TPM 2.0 stack: the public surface, named one by one.
 *
 * Agent side: `Tpm` (open a TCTI, create keys, quote, certify, activate credentials).
 * Verifier side: the codecs (TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE), key conversion,
 * signature verification, Names, policy digests and MakeCredential in software.
 */

// facade and transports
export { Tpm } from './tpm.js';
export type { KeyBlob, PcrValue, SignedAttestation, TpmKey } from './tpm.js';
export { openTransport, parseSwtpmConf } from './transport/open.js';
export type { OpenOptions } from './transport/open.js';
export type { TpmTransport } from './transport/transport.js';
export { SocketTransport } from './transport/socket.js';
export { DeviceTransport } from './transport/device.js';
export { TctiTransport } from './transport/tcti.js';

// commands and the pipeline
export { AUTH, PLAIN, command } from './command.js';
export type {
  AuthHandleRef,
  AuthorizedHandle,
  Command,
  CommandArgs,
  CommandResult,
  HandleRef,
  NamedHandle,
} from './command.js';
export { execute } from './execute.js';
export type { ExecuteOptions } from './execute.js';
export { PASSWORD, AuthSession } from './session.js';
export type { Session } from './session.js';
export { startSession } from './start-session.js';
export type { StartSessionOptions } from './start-session.js';

// errors and constants
export { TPM_RC, TpmError, decodeRc, isTpmRc } from './errors.js';
export type { DecodedRc } from './errors.js';
export { TpmParseError, TpmReader, TpmWriter } from './marshal.js';
export {
  EK_NV_INDEX,
  EK_PERSISTENT_HANDLE,
  TPMA_NV,
  TPMA_OBJECT,
  TPMA_SESSION,
  TPM_ALG,
  TPM_CAP,
  TPM_CC,
  TPM_ECC_CURVE,
  TPM_GENERATED_VALUE,
  TPM_HT,
  TPM_NT,
  TPM_PT,
  TPM_RH,
  TPM_SE,
  TPM_ST,
  TPM_SU,
} from './constants.js';

// structures (codecs) the verifier needs
export { marshal, unmarshal } from './structures/codec.js';
export type { Codec, Sized, SizedInput } from './structures/codec.js';
export { tpm2bPublic, tpmtPublic, hasAttributes } from './structures/public.js';
export type { EccPublic, RsaPublic, Tpm2bPublic, TpmtPublic } from './structures/public.js';
export { tpm2bAttest, tpmsAttest } from './structures/attest.js';
export type { Tpm2bAttest, TpmsAttest, TpmsCertifyInfo, TpmsCreationInfo, TpmsQuoteInfo } from './structures/attest.js';
export { isEccSignature, isRsaSignature, tpmtSignature } from './structures/signature.js';
export type { EccSignature, RsaSignature, TpmtSignature } from './structures/signature.js';
export { tpmtSigScheme } from './structures/schemes.js';
export type { TpmtSigScheme } from './structures/schemes.js';
export { describeSelection, pcrSelection, selectedPcrs, tpmlPcrSelection } from './structures/pcr.js';
export type { PcrBankSelection, TpmlPcrSelection, TpmsPcrSelection } from './structures/pcr.js';
export { tpm2bNvPublic, tpmsNvPublic } from './structures/nv.js';
export type { TpmsNvPublic } from './structures/nv.js';
export { eccUncompressedPoint, publicFromKeyObject, publicKeyObject, publicKeySpki } from './structures/keys.js';

// crypto shared by agent and verifier
export { eccSignatureToDer, eccSignatureToP1363, verifyTpmSignature } from './crypto/signature.js';
export { makeCredential } from './crypto/credential.js';
export type { Credential } from './crypto/credential.js';
export { kdfa } from './crypto/kdfa.js';
export { kdfe } from './crypto/kdfe.js';
export {
  ekPolicyA,
  ekPolicyB,
  policyAuthValue,
  policyCommandCode,
  policyOr,
  policySecret,
  policyStart,
} from './crypto/policy.js';
export { digestSize, nodeHashName, tpmHashAlg } from './crypto/hash.js';
export { handleName, nameFromPublicBytes, nvName, objectName, qualifiedName } from './name.js';

// keys and templates
export { EK_KINDS } from './ek.js';
export type { EkCertificate, EkKind } from './ek.js';
export {
  akTemplateEccP256,
  ekTemplateEccP256,
  ekTemplateEccP384,
  ekTemplateRsa2048,
  signingKeyTemplateEccP256,
  srkTemplateEccP256,
} from './templates.js';
