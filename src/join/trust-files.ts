/**
 * The files a join rule names (ca_files, crl_files), read when the rule is used — not when it
 * is applied, since `sigil ctl apply` may run on another machine — and cached by path,
 * modification time and size, so replacing a CRL file takes effect on the next join without
 * a restart (join/rule-files.ts). An unreadable or unparseable file is `join_rule_unusable`
 * naming the file.
 */
import { SigilError } from '../errors.js';
import { parsePem } from '../pki/pem.js';
import { cachedRuleFile, type RuleFileCache } from './rule-files.js';
import { parseCert, type ParsedCert } from './x509-cert.js';
import { parseCrl, type LoadedCrl } from './x509-crl.js';

/** One issuer's parsed CA and CRL files (join/caches.ts); undefined reads the file every time. */
export interface TrustFileCache {
  readonly ca: RuleFileCache<ParsedCert[]>;
  readonly crl: RuleFileCache<LoadedCrl[]>;
}

export function createTrustFileCache(): TrustFileCache {
  return { ca: new Map(), crl: new Map() };
}

const isPem = (b: Buffer): boolean => b.subarray(0, 64).toString('latin1').includes('-----BEGIN');

/** Every certificate in a CA file (PEM bundle, or one DER certificate), read now (no cache). */
export function loadCaFile(path: string): ParsedCert[] {
  return readCaFile(undefined, path);
}

/** A CRL file, read now (no cache). */
export function loadCrlFile(path: string): LoadedCrl[] {
  return readCrlFile(undefined, path);
}

/** Every certificate in a CA file (PEM bundle, or one DER certificate). */
export function readCaFile(cache: TrustFileCache | undefined, path: string): ParsedCert[] {
  return cachedRuleFile(cache?.ca, path, 'CA file', (bytes) => {
    let ders: Buffer[];
    try {
      ders = isPem(bytes)
        ? parsePem(bytes.toString('utf8'), 'join_rule_unusable')
            .filter((b) => b.label === 'CERTIFICATE' || b.label === 'TRUSTED CERTIFICATE')
            .map((b) => b.der)
        : [bytes];
    } catch (e) {
      throw new SigilError('join_rule_unusable', `CA file ${path}: ${(e as Error).message}`);
    }
    if (ders.length === 0) throw new SigilError('join_rule_unusable', `CA file ${path} holds no CERTIFICATE`);
    return ders.map((der, i) => parseCert(der, `CA "${path}" #${i + 1}`, 'join_rule_unusable'));
  });
}

/** A CRL file (PEM "X509 CRL" or DER); a PEM file may hold several CRLs, each is loaded. */
export function readCrlFile(cache: TrustFileCache | undefined, path: string): LoadedCrl[] {
  return cachedRuleFile(cache?.crl, path, 'CRL file', (bytes) => {
    let ders: Buffer[];
    try {
      ders = isPem(bytes)
        ? parsePem(bytes.toString('utf8'), 'join_rule_unusable')
            .filter((b) => b.label === 'X509 CRL')
            .map((b) => b.der)
        : [bytes];
    } catch (e) {
      throw new SigilError('join_rule_unusable', `CRL file ${path}: ${(e as Error).message}`);
    }
    if (ders.length === 0) throw new SigilError('join_rule_unusable', `CRL file ${path} holds no "X509 CRL" block`);
    return ders.map((d) => parseCrl(d, path));
  });
}
