/**
 * A PKI made with plain `openssl` commands only — an "enterprise CA no one here wrote code
 * for" — for x509 join tests: keys, self-signed roots, CAs and leaves signed with
 * `openssl x509 -req -extfile`, a minimal `openssl ca` directory for revocation, CRLs and
 * certificates with dates in the past, and `openssl verify` for cross-checks.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type KeyKind = 'ec' | 'ec384' | 'rsa' | 'rsa1024';

export interface Issued {
  name: string;
  cert: string;
  key: string;
  /** PEM of the certificate. */
  pem: string;
}

export function openssl(args: string[], opts: { cwd?: string; input?: string } = {}): string {
  try {
    return execFileSync('openssl', args, {
      encoding: 'utf8',
      cwd: opts.cwd,
      input: opts.input,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr ?? ''}${err.stdout ?? ''}${err.message}`);
  }
}

/** `openssl verify`: true when it prints OK, with its output for messages. */
export function opensslVerify(args: string[]): { ok: boolean; out: string } {
  try {
    const out = execFileSync('openssl', ['verify', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { ok: /: OK\s*$/.test(out.trim()), out };
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string };
    return { ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

const REQ_CONFIG = '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n';

export class OpensslPki {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  key(name: string, kind: KeyKind): string {
    const file = this.path(`${name}.key`);
    const alg =
      kind === 'ec'
        ? ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']
        : kind === 'ec384'
          ? ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384']
          : ['-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${kind === 'rsa' ? 2048 : 1024}`];
    openssl(['genpkey', ...alg, '-out', file]);
    return file;
  }

  private extFile(name: string, lines: string[]): string {
    const f = this.path(`${name}.ext`);
    writeFileSync(f, `${REQ_CONFIG}[ext]\n${lines.join('\n')}\n`);
    return f;
  }

  private issued(name: string, key: string): Issued {
    const cert = this.path(`${name}.pem`);
    return { name, cert, key, pem: readFileSync(cert, 'utf8') };
  }

  root(name: string, subj: string, kind: KeyKind, ext: string[] = []): Issued {
    const key = this.key(name, kind);
    const cfg = this.extFile(name, [
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      ...ext,
    ]);
    openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      key,
      '-subj',
      subj,
      '-days',
      '3650',
      '-sha256',
      '-config',
      cfg,
      '-extensions',
      'ext',
      '-out',
      this.path(`${name}.pem`),
    ]);
    return this.issued(name, key);
  }

  /** A CSR for `key` (or a new key of `kind`). */
  csr(name: string, subj: string, key: string): string {
    const out = this.path(`${name}.csr`);
    const cfg = this.extFile(`${name}-req`, []);
    openssl(['req', '-new', '-key', key, '-subj', subj, '-config', cfg, '-out', out]);
    return out;
  }

  /** Sign `csr` (or a CSR for a fresh key) with `ca` using `openssl x509 -req` and extension lines `ext`. */
  sign(
    name: string,
    ca: Issued,
    subj: string,
    ext: string[],
    opts: { kind?: KeyKind; key?: string; csr?: string; days?: number; md?: string } = {},
  ): Issued {
    const key = opts.key ?? (opts.csr ? '' : this.key(name, opts.kind ?? 'ec'));
    const csr = opts.csr ?? this.csr(name, subj, key);
    const cfg = this.extFile(name, ext);
    openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.cert,
      '-CAkey',
      ca.key,
      '-set_serial',
      `0x${randomBytes(9).toString('hex')}`,
      '-days',
      String(opts.days ?? 365),
      `-${opts.md ?? 'sha256'}`,
      '-extfile',
      cfg,
      '-extensions',
      'ext',
      '-out',
      this.path(`${name}.pem`),
    ]);
    return this.issued(name, key);
  }

  intermediate(
    name: string,
    ca: Issued,
    subj: string,
    kind: KeyKind,
    ext: string[] = ['basicConstraints = critical,CA:TRUE,pathlen:0'],
  ): Issued {
    return this.sign(
      name,
      ca,
      subj,
      [
        ...ext,
        'keyUsage = critical,keyCertSign,cRLSign',
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
      ],
      { kind },
    );
  }

  leaf(
    name: string,
    ca: Issued,
    subj: string,
    opts: { kind?: KeyKind; key?: string; csr?: string; ext?: string[]; san?: string; md?: string } = {},
  ): Issued {
    const ext = opts.ext ?? [
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature',
      'extendedKeyUsage = clientAuth',
    ];
    return this.sign(
      name,
      ca,
      subj,
      [...ext, ...(opts.san ? [`subjectAltName = ${opts.san}`] : []), 'authorityKeyIdentifier = keyid'],
      opts,
    );
  }

  /** A minimal `openssl ca` directory around `ca`, for -revoke, -gencrl and back-dated issuance. */
  caDir(ca: Issued): OpensslCaDir {
    return new OpensslCaDir(this, ca);
  }

  /** SHA-256 fingerprint as openssl prints it (AA:BB:…). */
  fingerprint(cert: string): string {
    return openssl(['x509', '-in', cert, '-noout', '-fingerprint', '-sha256']).trim().split('=')[1]!;
  }
}

export class OpensslCaDir {
  readonly dir: string;
  readonly config: string;

  constructor(
    private readonly pki: OpensslPki,
    ca: Issued,
  ) {
    this.dir = pki.path(`${ca.name}-ca`);
    mkdirSync(join(this.dir, 'newcerts'), { recursive: true });
    writeFileSync(join(this.dir, 'index.txt'), '');
    writeFileSync(join(this.dir, 'serial'), `${randomBytes(8).toString('hex').toUpperCase()}\n`);
    writeFileSync(join(this.dir, 'crlnumber'), '1000\n');
    this.config = join(this.dir, 'ca.cnf');
    writeFileSync(
      this.config,
      `[ca]
default_ca = d
[d]
dir = ${this.dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = ${ca.cert}
private_key = ${ca.key}
default_md = sha256
default_days = 365
default_crl_days = 7
policy = pol
unique_subject = no
copy_extensions = none
x509_extensions = leaf_ext
[pol]
organizationName = optional
organizationalUnitName = optional
serialNumber = optional
commonName = supplied
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`,
    );
  }

  /** `openssl ca` with explicit -startdate/-enddate (YYYYMMDDHHMMSSZ), e.g. an already expired certificate. */
  issueDated(name: string, subj: string, startdate: string, enddate: string, kind: KeyKind = 'ec'): Issued {
    const key = this.pki.key(name, kind);
    const csr = this.pki.csr(name, subj, key);
    const cert = this.pki.path(`${name}.pem`);
    openssl([
      'ca',
      '-batch',
      '-config',
      this.config,
      '-in',
      csr,
      '-out',
      cert,
      '-notext',
      '-startdate',
      startdate,
      '-enddate',
      enddate,
    ]);
    return { name, cert, key, pem: readFileSync(cert, 'utf8') };
  }

  revoke(cert: Issued): void {
    openssl(['ca', '-config', this.config, '-revoke', cert.cert, '-crl_reason', 'keyCompromise']);
  }

  /**
   * Write a CRL (PEM) to `out`. `lastUpdate`/`nextUpdate` (YYYYMMDDHHMMSSZ) set its validity
   * outright, e.g. a CRL whose nextUpdate has passed; otherwise it is valid from now for `crldays`.
   */
  gencrl(out: string, opts: { crldays?: number; lastUpdate?: string; nextUpdate?: string } = {}): string {
    const dates =
      opts.nextUpdate !== undefined
        ? ['-crl_nextupdate', opts.nextUpdate, ...(opts.lastUpdate ? ['-crl_lastupdate', opts.lastUpdate] : [])]
        : ['-crldays', String(opts.crldays ?? 7)];
    openssl(['ca', '-config', this.config, '-gencrl', '-out', out, ...dates]);
    return out;
  }
}
