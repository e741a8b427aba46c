/**
 * A test-local swtpm_localca — the "manufacturer" that signs EK and platform certificates —
 * so tests never touch /var/lib/swtpm-localca. swtpm_setup is pointed at it through its
 * `--config` file (create_certs_tool_config / create_certs_tool_options); swtpm_localca creates
 * the root and intermediate on first use, as `swtpm-localca-rootca-cert.pem` and
 * `issuercert.pem` in the CA's state directory.
 *
 * swtpm_localca's own intermediate has KeyUsage keyCertSign only, so by RFC 5280 §6.3.3 (f) no
 * CRL it signs can be believed. A manufacturer that publishes EK CRLs is modelled with
 * `crlSigning: true`: the root and intermediate are made with plain `openssl` (keyCertSign +
 * cRLSign) before the first manufacture, in the files swtpm_localca reads, and swtpm_localca
 * signs the EK certificates with that intermediate's key (`signingKey`).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { OpensslPki, type Issued } from './openssl-pki.js';

/** A swtpm_localca instance: the root + intermediate that sign EK and platform certificates. */
export interface SharedLocalCa {
  /** CA state directory (statedir of swtpm-localca.conf). */
  readonly dir: string;
  readonly configFile: string;
  readonly optionsFile: string;
  /** `swtpm-localca-rootca-cert.pem` — the trust anchor an issuer pins. */
  readonly rootCert: string;
  /** `issuercert.pem` — the intermediate that signs the EK certs. */
  readonly issuerCert: string;
  /** `signkey.pem` — the intermediate's private key (PEM; readable by openssl). */
  readonly signingKey: string;
  /** `[root, issuer]`; the files exist once the first TPM using this CA is manufactured. */
  readonly caFiles: readonly [string, string];
  destroy(): void;
}

interface CaInternals {
  ca: SharedLocalCa;
  /** The first manufacture creates the CA; it runs alone, the rest may then run in parallel. */
  init: Promise<void> | undefined;
}

const caInternals = new WeakMap<SharedLocalCa, CaInternals>();

/**
 * A new local CA in its own temp dir (or `dir`). Share one between TPMs to model a fleet from one
 * manufacturer; create another to model a foreign manufacturer.
 */
export async function createLocalCa(
  opts: { dir?: string; manufacturer?: string; crlSigning?: boolean } = {},
): Promise<SharedLocalCa> {
  const base = opts.dir ? resolve(opts.dir) : mkdtempSync(join(tmpdir(), 'sigil-localca-'));
  const dir = join(base, 'state');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const configFile = join(base, 'swtpm-localca.conf');
  const optionsFile = join(base, 'swtpm-localca.options');
  writeFileSync(
    configFile,
    [
      `statedir = ${dir}`,
      `signingkey = ${join(dir, 'signkey.pem')}`,
      `issuercert = ${join(dir, 'issuercert.pem')}`,
      `certserial = ${join(dir, 'certserial')}`,
      '',
    ].join('\n'),
  );
  const manufacturer = (opts.manufacturer ?? 'Sigil').replace(/\s+/g, '_');
  writeFileSync(
    optionsFile,
    [`--platform-manufacturer ${manufacturer}`, '--platform-version 1.0', '--platform-model SimulatedGateway', ''].join(
      '\n',
    ),
  );
  const rootCert = join(dir, 'swtpm-localca-rootca-cert.pem');
  const issuerCert = join(dir, 'issuercert.pem');
  const signingKey = join(dir, 'signkey.pem');
  if (opts.crlSigning) {
    const made = opensslManufacturerCa(join(base, 'openssl'), manufacturer.replace(/_/g, ' '));
    copyFileSync(made.root.cert, rootCert);
    copyFileSync(made.issuer.cert, issuerCert);
    copyFileSync(made.issuer.key, signingKey);
  }
  const ca: SharedLocalCa = {
    dir,
    configFile,
    optionsFile,
    rootCert,
    issuerCert,
    signingKey,
    caFiles: [rootCert, issuerCert],
    destroy: () => rmSync(base, { recursive: true, force: true }),
  };
  caInternals.set(ca, { ca, init: undefined });
  return ca;
}

/** A manufacturer's EK root and issuing CA made with openssl, both allowed to sign CRLs. */
function opensslManufacturerCa(dir: string, manufacturer: string): { root: Issued; issuer: Issued } {
  const pki = new OpensslPki(dir);
  const root = pki.root('ek-root', `/O=${manufacturer}/CN=${manufacturer} EK Root CA`, 'rsa');
  const issuer = pki.intermediate('ek-issuer', root, `/O=${manufacturer}/CN=${manufacturer} EK Issuing CA`, 'rsa', [
    'basicConstraints = critical,CA:TRUE,pathlen:0',
  ]);
  return { root, issuer };
}

/** Run a manufacture that uses `ca`; the first one (which creates the CA) runs alone. */
export async function withCa(ca: SharedLocalCa, manufacture: () => Promise<void>): Promise<void> {
  const internals = caInternals.get(ca);
  if (!internals) throw new TypeError('localCa must come from createLocalCa()');
  if (existsSync(ca.rootCert) && existsSync(ca.issuerCert)) return manufacture();
  if (!internals.init) {
    internals.init = manufacture();
    return internals.init;
  }
  await internals.init.catch(() => undefined);
  return manufacture();
}
