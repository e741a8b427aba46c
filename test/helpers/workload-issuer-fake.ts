/**
 * A stand-in for the issuer side of the Workload API (src/agent/workload/issuer-port.ts), with a
 * real CA (root → intermediate → workload SVIDs) and a real JWT-SVID signing key, so the agent's
 * Workload API can be tested before and apart from the issuer's `workload` resource. `down`
 * makes every call fail as an unreachable issuer does.
 */
import { createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { exportJWK, SignJWT } from 'jose';
import { SigilError } from '../../src/errors.js';
import { createIntermediateCa, createRootCa } from '../../src/pki/ca.js';
import { parseCsr } from '../../src/pki/csr.js';
import { CertificateIssuer } from '../../src/pki/issue.js';
import { toPem } from '../../src/pki/pem.js';
import { randomSerial } from '../../src/pki/serial.js';
import type {
  WorkloadBundles,
  WorkloadEntry,
  WorkloadIssuerPort,
  WorkloadJwtSvid,
  WorkloadSvid,
} from '../../src/agent/workload/issuer-port.js';

export const TRUST_DOMAIN = 'workload.test';

export class FakeWorkloadIssuer implements WorkloadIssuerPort {
  entries: WorkloadEntry[] = [];
  down = false;
  /** X.509-SVID lifetime the fake issues, in seconds. */
  ttlS = 3600;
  jwtTtlS = 600;
  readonly calls = { fetchEntries: 0, signX509: 0, signJwt: 0, fetchBundles: 0 };
  /** Replace the next signX509 answer (a misbehaving issuer). */
  tamper: ((svid: WorkloadSvid) => WorkloadSvid) | undefined;
  /** Certify the next CSR under this SPIFFE ID instead of the entry's (a misbehaving issuer). */
  wrongSpiffeId: string | undefined;
  readonly root = createRootCa({ trustDomain: TRUST_DOMAIN });
  readonly intermediate = createIntermediateCa(this.root, { trustDomain: TRUST_DOMAIN });
  private readonly ca = new CertificateIssuer({ caCertDer: this.intermediate.certDer, caKey: this.intermediate.key });
  private readonly jwtKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  readonly jwtKid = 'fake-jwt-1';

  get rootPem(): string {
    return toPem('CERTIFICATE', this.root.certDer);
  }

  private check(): void {
    if (this.down) throw new SigilError('issuer_unreachable', 'the fake issuer is down');
  }

  async fetchEntries(): Promise<WorkloadEntry[]> {
    this.calls.fetchEntries++;
    this.check();
    return structuredClone(this.entries);
  }

  async signX509(entryId: string, csrPem: string): Promise<WorkloadSvid> {
    this.calls.signX509++;
    this.check();
    const entry = this.entries.find((e) => e.id === entryId);
    if (!entry) throw new SigilError('not_found', `no workload entry ${entryId} for this node`);
    const csr = parseCsr(csrPem);
    const serial = randomSerial();
    const now = Date.now();
    const der = this.ca.issueSvid({
      serial,
      spkiDer: csr.spkiDer,
      spiffeId: this.wrongSpiffeId ?? entry.spiffeId,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + this.ttlS * 1000),
      dnsNames: entry.dnsNames,
    });
    const svid: WorkloadSvid = {
      entryId,
      spiffeId: entry.spiffeId,
      chainPem: toPem('CERTIFICATE', der) + toPem('CERTIFICATE', this.intermediate.certDer),
      serial: serial.toString('hex'),
      notAfter: new Date(new X509Certificate(der).validTo).getTime(),
    };
    const t = this.tamper;
    this.tamper = undefined;
    this.wrongSpiffeId = undefined;
    return t ? t(svid) : svid;
  }

  async signJwt(entryId: string, audience: string[]): Promise<WorkloadJwtSvid> {
    this.calls.signJwt++;
    this.check();
    const entry = this.entries.find((e) => e.id === entryId);
    if (!entry) throw new SigilError('not_found', `no workload entry ${entryId}`);
    if (!audience.every((a) => entry.jwtAudiences.includes(a)))
      throw new SigilError('role_denied', `audience ${audience.join(',')} not allowed`);
    const now = Math.floor(Date.now() / 1000);
    const exp = now + this.jwtTtlS;
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.jwtKid, typ: 'JWT' })
      .setSubject(entry.spiffeId)
      .setAudience(audience)
      .setIssuedAt(now)
      .setExpirationTime(exp)
      .sign(this.jwtKey.privateKey);
    return { entryId, spiffeId: entry.spiffeId, audience, token, expiresAt: exp * 1000 };
  }

  /** A token signed by the trust domain's key but with any claims (attack tests). */
  async signRaw(claims: Record<string, unknown>): Promise<string> {
    return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: this.jwtKid }).sign(this.jwtKey.privateKey);
  }

  async fetchBundles(): Promise<WorkloadBundles> {
    this.calls.fetchBundles++;
    this.check();
    const jwk = await exportJWK(createPublicKey(this.jwtKey.privateKey));
    return {
      trustDomain: TRUST_DOMAIN,
      x509RootsPem: this.rootPem,
      jwtJwks: JSON.stringify({ keys: [{ ...jwk, kid: this.jwtKid, use: 'jwt-svid', alg: 'ES256' }] }),
    };
  }
}

export function entry(id: string, selectors: string[], extra: Partial<WorkloadEntry> = {}): WorkloadEntry {
  return {
    id,
    spiffeId: `spiffe://${TRUST_DOMAIN}/${id}`,
    selectors,
    ttlS: 3600,
    dnsNames: [],
    jwtAudiences: [],
    ...extra,
  };
}
