/**
 * A SoftHSM2 token of the test's own, in a temp dir, and a look at it from outside Sigil: the
 * token is inspected with pkcs11js directly (not Sigil's keystore), each time with a fresh
 * C_Initialize so that objects another process (the agent) made or destroyed are seen.
 *
 * SoftHSM reads SOFTHSM2_CONF at C_Initialize; setting it in process.env reaches every child
 * process (`sigil` runs) started after — vitest runs each test file in its own process.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as Pkcs11Js from 'pkcs11js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsmToken {
  module: string;
  label: string;
  pin: string;
  /** 0600 file holding the user PIN (one line). */
  pinFile: string;
  /** The softhsm2.conf; also put into process.env.SOFTHSM2_CONF. */
  conf: string;
}

/** Initialise a token labelled `label` in `dir`/tokens with the user PIN `pin`. */
export function initSoftHsmToken(dir: string, o: { label?: string; pin?: string; soPin?: string } = {}): SoftHsmToken {
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('softhsm2-util not found; install it with: sudo apt-get install -y softhsm2 opensc');
  }
  const label = o.label ?? 'sigil';
  const pin = o.pin ?? '4711-secret-pin';
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens, { recursive: true });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = conf;
  execFileSync(
    'softhsm2-util',
    ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', o.soPin ?? '5678'],
    { env: process.env, stdio: 'ignore' },
  );
  const pinFile = join(dir, 'pin');
  writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
  return { module: SOFTHSM_MODULE, label, pin, pinFile, conf };
}

/** A private key on the token, as the token reports it. */
export interface TokenKey {
  label: string;
  /** CKA_ID, lowercase hex. */
  id: string;
  sensitive: boolean;
  extractable: boolean;
  neverExtractable: boolean;
  /** What C_GetAttributeValue(CKA_VALUE) answered: the CKR_* name of its error, or 'readable'. */
  valueRead: string;
  /** The uncompressed EC point of the matching public key object (04‖X‖Y), if there is one. */
  publicPoint: Buffer | undefined;
}

const P = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Js;

/** Every private key on the token (logged in as the user), with its public key's point. */
export function listTokenKeys(t: SoftHsmToken): TokenKey[] {
  const lib = new P.PKCS11();
  lib.load(t.module);
  lib.C_Initialize();
  try {
    const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.replace(/[ \0]+$/, '') === t.label);
    if (!slot) throw new Error(`no token "${t.label}"`);
    const session = lib.C_OpenSession(slot, P.CKF_SERIAL_SESSION);
    lib.C_Login(session, P.CKU_USER, t.pin);
    const find = (template: Pkcs11Js.Template): Pkcs11Js.Handle[] => {
      lib.C_FindObjectsInit(session, template);
      try {
        return lib.C_FindObjects(session, 100);
      } finally {
        lib.C_FindObjectsFinal(session);
      }
    };
    const attr = (h: Pkcs11Js.Handle, type: number): Buffer =>
      lib.C_GetAttributeValue(session, h, [{ type }])[0]!.value;
    return find([{ type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY }]).map((h) => {
      const label = attr(h, P.CKA_LABEL).toString('utf8');
      const id = attr(h, P.CKA_ID);
      let valueRead = 'readable';
      try {
        attr(h, P.CKA_VALUE);
      } catch (e) {
        valueRead = (e as Error).message;
      }
      const [pub] = find([
        { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
        { type: P.CKA_ID, value: id },
      ]);
      // CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); P-256 here.
      const point = pub === undefined ? undefined : attr(pub, P.CKA_EC_POINT).subarray(-65);
      return {
        label,
        id: id.toString('hex'),
        sensitive: attr(h, P.CKA_SENSITIVE)[0] !== 0,
        extractable: attr(h, P.CKA_EXTRACTABLE)[0] !== 0,
        neverExtractable: attr(h, P.CKA_NEVER_EXTRACTABLE)[0] !== 0,
        valueRead,
        publicPoint: point,
      };
    });
  } finally {
    lib.C_Finalize();
    lib.close();
  }
}

/** Every public key object's label on the token (to see that a removed pair left nothing behind). */
export function listPublicKeyLabels(t: SoftHsmToken): string[] {
  const lib = new P.PKCS11();
  lib.load(t.module);
  lib.C_Initialize();
  try {
    const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.replace(/[ \0]+$/, '') === t.label)!;
    const session = lib.C_OpenSession(slot, P.CKF_SERIAL_SESSION);
    lib.C_FindObjectsInit(session, [{ type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY }]);
    const found = lib.C_FindObjects(session, 100);
    lib.C_FindObjectsFinal(session);
    return found.map((h) => lib.C_GetAttributeValue(session, h, [{ type: P.CKA_LABEL }])[0]!.value.toString('utf8'));
  } finally {
    lib.C_Finalize();
    lib.close();
  }
}
