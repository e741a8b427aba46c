/**
 * Issuer names (`sigil server add-issuer --name`) and the intermediate subject made from them.
 * Every intermediate needs its own subject Name: a renewal finds the CA that signed the presented
 * leaf by the leaf's issuer Name (pki/own-leaf.ts), and relying parties match a CRL to its CA by
 * name (RFC 5280 §5.1.2.3). So the name goes into the CN, and a name already registered is refused.
 */
import { SigilError } from '../../errors.js';

export const ISSUER_NAME_RE = /^[a-z0-9-]{1,32}$/;
/** The name the first issuer's intermediate (made by `server init`) is registered under, unless issuer.json says otherwise. */
export const FIRST_ISSUER_NAME = 'primary';

export function checkIssuerName(name: string): string {
  if (!ISSUER_NAME_RE.test(name))
    throw new SigilError('config_invalid', `--name must be 1–32 characters of a-z, 0-9 and -, got "${name}"`);
  return name;
}

/** The intermediate's CN: `<td> intermediate CA <name>`, or `Sigil intermediate CA <name>` when that exceeds 64 characters. */
export function intermediateCommonName(trustDomain: string, name: string): string {
  const cn = `${trustDomain} intermediate CA ${name}`;
  return [...cn].length <= 64 ? cn : `Sigil intermediate CA ${name}`;
}
