/**
 * The shared registry of issuing intermediates (issue #15, "CA material for many issuers";
 * docs/issuers.md): one row per issuer's intermediate CA certificate, so that every issuer on one
 * database knows every live intermediate of the root, and a counter per CRL issuer, so that CRLs
 * signed by several processes never repeat a cRLNumber (RFC 5280 §5.2.3).
 *
 * The rows are NOT trusted by themselves: a database writer can insert any certificate. Every
 * issuer verifies a row's certificate against the root it pins before it accepts a leaf issued
 * under it (server/issuers/verify.ts). Reads and writes run outside write transactions only.
 */

/** active: issues and is trusted; retired: issues no more, its leaves still renew elsewhere; revoked: distrusted. */
export type IssuerStatus = 'active' | 'retired' | 'revoked';
export const ISSUER_STATUSES: readonly IssuerStatus[] = ['active', 'retired', 'revoked'];

export interface IssuerRecord {
  /** Operator-chosen name (`sigil server add-issuer --name`), [a-z0-9-], 1–32 characters. */
  name: string;
  /** The intermediate CA certificate, one PEM block. */
  certPem: string;
  status: IssuerStatus;
  /** Why it was retired or revoked (operator text), null while active. */
  reason: string | null;
  createdAt: number;
  /** When the status last changed (createdAt until then). */
  updatedAt: number;
}

export interface IssuerRegistryStore {
  /** Record a new intermediate as active. 'exists' (and nothing written) when the name is taken. */
  register(rec: { name: string; certPem: string; createdAt: number }): Promise<'created' | 'exists'>;
  get(name: string): Promise<IssuerRecord | undefined>;
  /** Every row, ordered by name (byte order). */
  list(): Promise<IssuerRecord[]>;
  /**
   * Move an issuer forward: active → retired → revoked (or active → revoked). A status never goes
   * back (a revoked intermediate stays revoked); asking for the same or an earlier status changes
   * nothing. Returns the row as it is afterwards, undefined for an unknown name. On a shared
   * store, other issuers are told (PostgreSQL: NOTIFY in the same statement).
   */
  setStatus(
    name: string,
    status: 'retired' | 'revoked',
    reason: string | null,
    now: number,
  ): Promise<IssuerRecord | undefined>;
  /**
   * The next cRLNumber for the CRL issuer `crlIssuer` (an opaque key: the issuer's subject hash),
   * atomically across processes and issuers: greater than every number this call returned before
   * for that key, and at least `atLeast` (a positive safe integer: callers pass the clock, so
   * numbers keep growing from those signed before the counter existed).
   */
  nextCrlNumber(crlIssuer: string, atLeast: number): Promise<number>;
}

/** Checks shared by both backends, so they refuse the same input the same way. */
export function checkCrlNumberArgs(crlIssuer: string, atLeast: number): void {
  if (typeof crlIssuer !== 'string' || crlIssuer.length === 0 || crlIssuer.length > 200)
    throw new TypeError('crlIssuer must be a non-empty string of at most 200 characters');
  if (!Number.isSafeInteger(atLeast) || atLeast < 1) throw new TypeError('atLeast must be a positive safe integer');
}

/** The order statuses move in (setStatus never lowers it). */
export const STATUS_RANK: Readonly<Record<IssuerStatus, number>> = { active: 0, retired: 1, revoked: 2 };

/*
 * `Stores.issuers` (outside transactions only, so not in TxStores), declared by module
 * augmentation as `Stores.fleet` is (fleet-types.ts): additive, no edit of the contract's body.
 */
declare module './types.js' {
  interface Stores {
    /** The registry of issuing intermediates and the per-CRL-issuer cRLNumber counters. */
    readonly issuers: IssuerRegistryStore;
  }
}
