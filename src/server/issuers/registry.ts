/**
 * What one issuer knows of the other issuers' intermediates (issue #15; docs/issuers.md), owned
 * by its IssuerContext (`ctx.intermediates`). Built from the shared registry (`stores.issuers`)
 * and re-read on a timer and on the change feed (./runtime.ts); every row is verified against the
 * pinned root first (./verify.ts), a row that fails is ignored and logged.
 *
 *   live      own intermediate first, then every other active or retired one: renewals accept
 *             leaves issued under any of them (an agent joined at A renews at B), the bundle lists
 *             them, and stored answers made by any of them are replayed (./answers.ts)
 *   revoked   intermediates revoked in the registry: a renewal presenting a leaf issued under one,
 *             or carrying one in its x5c, is refused `issuer_revoked` (refuseRevoked), before any
 *             other check
 *   own       this issuer's own status: anything but active stops it (./runtime.ts)
 */
import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { readCertificate } from '../../pki/cert-reader.js';
import { subjectNameDer } from '../../pki/name.js';
import type { IssuingCa } from '../../pki/own-leaf.js';
import type { Logger } from '../../util/log.js';
import type { CaMaterial } from '../data-dir.js';
import type { IssuerRecord, IssuerStatus } from '../store/issuer-registry-types.js';
import type { Stores } from '../store/types.js';
import { RegistryAnswerCodec } from './answers.js';
import { readRootCrl } from './root-crl-file.js';
import { verifyIntermediate } from './verify.js';

export interface LiveIntermediate {
  /** Registry name; undefined for this issuer's own intermediate while it is not registered. */
  name: string | undefined;
  status: 'active' | 'retired';
  pem: string;
  ca: IssuingCa;
  own: boolean;
}

export interface RevokedIntermediate {
  name: string;
  certDer: Buffer;
  subjectDer: Buffer;
  reason: string | null;
  at: number;
}

export class IntermediateRegistry {
  readonly #ca: CaMaterial;
  readonly #stores: Stores;
  readonly #log: Logger | undefined;
  readonly #now: () => number;
  readonly #root: X509Certificate;
  readonly #own: LiveIntermediate;
  #live: LiveIntermediate[];
  #revoked: RevokedIntermediate[] = [];
  #ownStatus: IssuerStatus = 'active';
  #ownName: string | undefined;
  /** Rows refused at the last refresh, by name → reason (logged when they change). */
  #refused = new Map<string, string>();
  readonly #retiredListeners: Array<(status: IssuerStatus) => void> = [];
  /**
   * Intermediates this process has seen revoked (certificate hash): a later row that says active
   * again (a database writer's UPDATE; the store itself never moves a status back) is not believed.
   */
  readonly #seenRevoked = new Set<string>();
  /** Serials the local root CRL lists (./root-crl-file.ts), when this issuer has one. */
  #rootCrlSerials: ReadonlySet<string> = new Set();
  #rootCrlFile: string | undefined;
  /** The root CRL file's bytes as last read and verified (the bundle answer carries them to agents). */
  #rootCrlDer: Buffer | undefined;
  /** Un-revoked rows already logged (once each). */
  readonly #warnedUnrevoked = new Set<string>();

  constructor(o: { ca: CaMaterial; stores: Stores; log?: Logger; now?: () => number }) {
    this.#ca = o.ca;
    this.#stores = o.stores;
    this.#log = o.log;
    this.#now = o.now ?? Date.now;
    this.#root = new X509Certificate(o.ca.rootDer);
    const own = new X509Certificate(o.ca.intermediateDer);
    this.#own = {
      name: undefined,
      status: 'active',
      pem: o.ca.intermediatePem.trim() + '\n',
      ca: { certDer: o.ca.intermediateDer, subjectDer: subjectNameDer(o.ca.intermediateDer), publicKey: own.publicKey },
      own: true,
    };
    this.#live = [this.#own];
  }

  /** Own intermediate first, then the others that verified, active or retired. */
  get live(): readonly LiveIntermediate[] {
    return this.#live;
  }

  get revoked(): readonly RevokedIntermediate[] {
    return this.#revoked;
  }

  /** This issuer's status in the registry ('active' while its intermediate is not registered: a lone issuer). */
  get ownStatus(): IssuerStatus {
    return this.#ownStatus;
  }

  get ownName(): string | undefined {
    return this.#ownName;
  }

  /** The CAs renewals accept (ctx.issuingCas). */
  issuingCas(): IssuingCa[] {
    return this.#live.map((l) => l.ca);
  }

  /** The intermediates agents need (the bundle): own first, then every other live one. */
  livePems(): string[] {
    return this.#live.map((l) => l.pem);
  }

  /** A codec that replays answers stored by any live intermediate (ctx.storedAnswers). */
  answerCodec(): RegistryAnswerCodec {
    const rootPem = this.#ca.rootPem.trim() + '\n';
    return new RegistryAnswerCodec(
      [this.#own.pem, rootPem],
      rootPem,
      this.#live.filter((l) => !l.own).map((l) => l.pem),
    );
  }

  /** Be told once when this issuer's own status leaves `active` (./runtime.ts stops the issuer). */
  onRetired(fn: (status: IssuerStatus) => void): void {
    this.#retiredListeners.push(fn);
  }

  /**
   * Refuse a presented chain that involves a revoked intermediate: a leaf whose issuer Name is a
   * revoked intermediate's subject, or a revoked intermediate among the x5c certificates. Costs
   * nothing while nothing is revoked (the common case: the leaf is not even parsed).
   */
  refuseRevoked(ders: readonly Buffer[]): void {
    if (this.#revoked.length === 0 || ders.length === 0) return;
    for (const d of ders.slice(1)) {
      const r = this.#revoked.find((x) => x.certDer.equals(d));
      if (r) throw revokedError(r, 'the x5c chain carries');
    }
    let issuer: Buffer;
    try {
      issuer = readCertificate(ders[0]!, 'bad_certificate', 'presented certificate').issuer;
    } catch {
      return; // the chain check that follows names what is wrong with it
    }
    const r = this.#revoked.find((x) => x.subjectDer.equals(issuer));
    if (r) throw revokedError(r, 'the presented certificate was issued by');
  }

  /** The root CRL (DER) this issuer read and verified, when it has one (ops/bundle.ts hands it to agents). */
  get rootCrlDer(): Buffer | undefined {
    return this.#rootCrlDer;
  }

  /** The certificates of this directory's earlier intermediates (../data-dir.ts keptIntermediatePems). */
  get keptPems(): string[] {
    return this.#ca.keptIntermediatePems ?? [];
  }

  /** Also trust the root CRL at `file` for revocations (read at every refresh; ./root-crl-file.ts). */
  useRootCrl(file: string): void {
    this.#rootCrlFile = file;
  }

  /** Re-read the registry; returns whether anything this issuer trusts changed. */
  async refresh(): Promise<boolean> {
    const rows = await this.#stores.issuers.list();
    await this.#readRootCrl();
    const now = this.#now();
    const next: View = { live: [this.#own], revoked: [], refused: new Map(), ownStatus: 'active', ownName: undefined };
    for (const row of rows) {
      // One row that cannot be read is refused alone: it must not stop the refresh, or every
      // revocation after it — in the registry and in the root CRL — would never apply on a
      // running issuer (review of issue #16: a row with trailing bytes after its certificate).
      try {
        this.#take(row, now, next);
      } catch (err) {
        next.refused.set(row.name, `cannot be read (${err instanceof Error ? err.message : String(err)})`);
      }
    }
    const { live, revoked, refused, ownStatus, ownName } = next;
    // Own intermediate revoked: its leaves are refused too, so it is not live.
    if (ownStatus === 'revoked') live.shift();
    this.#own.name = ownName;
    this.#own.status = ownStatus === 'retired' ? 'retired' : 'active';
    for (const [name, reason] of refused)
      if (this.#refused.get(name) !== reason)
        this.#log?.warn(
          { issuer: name, reason },
          `ignoring registered intermediate "${name}": ${reason} (docs/issuers.md: a database writer cannot add trust)`,
        );
    this.#refused = refused;
    const changed =
      live.length !== this.#live.length ||
      live.some((l, i) => !l.ca.certDer.equals(this.#live[i]!.ca.certDer) || l.status !== this.#live[i]!.status) ||
      revoked.length !== this.#revoked.length ||
      ownStatus !== this.#ownStatus;
    const wasActive = this.#ownStatus === 'active';
    this.#live = live;
    this.#revoked = revoked;
    this.#ownStatus = ownStatus;
    this.#ownName = ownName;
    if (wasActive && ownStatus !== 'active') for (const fn of this.#retiredListeners) fn(ownStatus);
    return changed;
  }

  async #readRootCrl(): Promise<void> {
    if (!this.#rootCrlFile) return;
    try {
      const crl = await readRootCrl(this.#rootCrlFile, this.#ca.rootDer);
      this.#rootCrlSerials = crl?.serials ?? new Set();
      this.#rootCrlDer = crl?.der;
    } catch (err) {
      // Keep what the last good file said: a damaged file must not un-revoke anything.
      this.#log?.error(
        { err, file: this.#rootCrlFile },
        'the root CRL cannot be used; keeping the revocations read before',
      );
    }
  }

  /** Sort one registry row into `next` (see the module comment). */
  #take(stored: IssuerRecord, now: number, next: View): void {
    const v = verifyIntermediate(stored.certPem, this.#root, this.#ca.trustDomain, now);
    if (!v.ok) {
      next.refused.set(stored.name, v.reason);
      return;
    }
    const { ca, pem, serial } = v.value;
    const row = { ...stored, status: this.#effectiveStatus(stored, ca, serial) };
    if (ca.certDer.equals(this.#own.ca.certDer)) {
      next.ownStatus = row.status;
      next.ownName = row.name;
      if (row.status === 'revoked') next.revoked.push(revokedEntry(row, ca));
    } else if (row.status === 'revoked') {
      next.revoked.push(revokedEntry(row, ca));
    } else if (next.live.some((l) => l.ca.subjectDer.equals(ca.subjectDer))) {
      // Two CAs with one subject cannot both be found by a leaf's issuer Name: the first stays.
      next.refused.set(row.name, 'its subject is already used by another intermediate');
    } else {
      next.live.push({ name: row.name, status: row.status, pem, ca, own: false });
    }
  }

  /** The row's status, unless this issuer saw it revoked or the root CRL lists it: then revoked, whatever the row says. */
  #effectiveStatus(row: IssuerRecord, ca: { publicKey: KeyObject }, serial: string): IssuerStatus {
    // Remembered by the intermediate's KEY, not its certificate bytes: an ECDSA signature can be
    // re-written (s → n − s) into other bytes that still verify, so a database writer could set
    // a "different" copy of a revoked intermediate back to active (review of issue #16). A
    // revocation is of the key; a certificate re-issued for the same key stays revoked too.
    const id = createHash('sha256')
      .update(ca.publicKey.export({ type: 'spki', format: 'der' }))
      .digest('hex');
    if (row.status === 'revoked') {
      this.#seenRevoked.add(id);
      return 'revoked';
    }
    const seen = this.#seenRevoked.has(id);
    if (!seen && !this.#rootCrlSerials.has(serial)) return row.status;
    if (!this.#warnedUnrevoked.has(id)) {
      this.#warnedUnrevoked.add(id);
      this.#log?.warn(
        { issuer: row.name, status: row.status },
        `the registry says "${row.name}" is ${row.status}, but it was revoked (${seen ? 'seen by this issuer' : 'listed in the root CRL'}); it stays revoked`,
      );
    }
    return 'revoked';
  }
}

/** What one refresh found. */
interface View {
  live: LiveIntermediate[];
  revoked: RevokedIntermediate[];
  /** Rows that did not verify, by name → why. */
  refused: Map<string, string>;
  ownStatus: IssuerStatus;
  ownName: string | undefined;
}

function revokedEntry(
  row: { name: string; reason: string | null; updatedAt: number },
  ca: IssuingCa,
): RevokedIntermediate {
  return { name: row.name, certDer: ca.certDer, subjectDer: ca.subjectDer, reason: row.reason, at: row.updatedAt };
}

function revokedError(r: RevokedIntermediate, what: string): SigilError {
  return new SigilError(
    'issuer_revoked',
    `${what} the intermediate CA of issuer "${r.name}", revoked at ${new Date(r.at).toISOString()}${r.reason ? ` (${r.reason})` : ''}; the agent must join again at a live issuer`,
  );
}
