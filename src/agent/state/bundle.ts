/**
 * The trust bundle (CA roots the agent uses to verify peers and the issuer) and the issuer CA
 * pin (`sha256:<spki hash>`) the agent checks every issuer response against. Both survive
 * restarts so an offline agent keeps verifying with what it last knew.
 */
import type { Statement } from 'better-sqlite3';
import { SigilError } from '../../errors.js';
import type { AgentDb } from './db.js';

export interface TrustBundle {
  rootsPem: string[];
  /** Unix ms. */
  updatedAt: number;
}

export interface IssuerPin {
  /** `sha256:<hex SHA-256 of the issuer CA's SubjectPublicKeyInfo DER>`. */
  pin: string;
  /** Unix ms. */
  pinnedAt: number;
}

/** The form `sigil server init` prints and the agent config accepts: lowercase hex SHA-256. */
const PIN_RE = /^sha256:[0-9a-f]{64}$/;

export class BundleStore {
  readonly #db: AgentDb;
  readonly #getBundle: Statement<[], { roots_pem: string; updated_at: number }>;
  readonly #putBundle: Statement<[string, number]>;
  readonly #getPin: Statement<[], { pin: string; pinned_at: number }>;
  readonly #putPin: Statement<[string, number]>;

  constructor(db: AgentDb) {
    this.#db = db;
    this.#getBundle = db.prepare('SELECT roots_pem, updated_at FROM trust_bundle WHERE id = 1');
    this.#putBundle = db.prepare('INSERT OR REPLACE INTO trust_bundle (id, roots_pem, updated_at) VALUES (1, ?, ?)');
    this.#getPin = db.prepare('SELECT pin, pinned_at FROM issuer_pin WHERE id = 1');
    this.#putPin = db.prepare('INSERT OR REPLACE INTO issuer_pin (id, pin, pinned_at) VALUES (1, ?, ?)');
  }

  get(): TrustBundle | undefined {
    const r = this.#getBundle.get();
    if (!r) return undefined;
    let roots: unknown;
    try {
      roots = JSON.parse(r.roots_pem);
    } catch {
      roots = undefined;
    }
    if (!Array.isArray(roots) || !roots.every((x) => typeof x === 'string')) {
      throw new SigilError('internal', 'agent state: the trust bundle row is corrupted');
    }
    return { rootsPem: roots as string[], updatedAt: r.updated_at };
  }

  save(b: TrustBundle): void {
    if (
      !Array.isArray(b.rootsPem) ||
      b.rootsPem.length === 0 ||
      !b.rootsPem.every((x) => typeof x === 'string' && x.length > 0)
    ) {
      // An empty bundle would make the agent trust nothing and fail every verification.
      throw new TypeError('bundle: rootsPem must be a non-empty array of PEM strings');
    }
    if (!Number.isSafeInteger(b.updatedAt)) throw new TypeError('bundle: updatedAt must be an integer (unix ms)');
    this.#putBundle.run(JSON.stringify(b.rootsPem), b.updatedAt);
  }

  getPin(): IssuerPin | undefined {
    const r = this.#getPin.get();
    return r ? { pin: r.pin, pinnedAt: r.pinned_at } : undefined;
  }

  /**
   * Record the pin on first contact. Recording the same pin again is a no-op; a *different*
   * pin is refused with `pin_mismatch` — a changed issuer CA is either an attack or a rotation,
   * and a rotation goes through {@link replacePin} after the new CA has been verified.
   */
  pin(pin: string, at: number): void {
    assertPin(pin);
    this.#db.transaction(() => {
      const existing = this.#getPin.get();
      if (!existing) {
        this.#putPin.run(pin, at);
        return;
      }
      if (existing.pin !== pin) {
        throw new SigilError('pin_mismatch', `the issuer CA ${pin} does not match the pinned ${existing.pin}`);
      }
    })();
  }

  /** Deliberately replace the pin (CA rotation verified by the caller, or an operator reset). */
  replacePin(pin: string, at: number): void {
    assertPin(pin);
    this.#putPin.run(pin, at);
  }
}

function assertPin(pin: string): void {
  if (typeof pin !== 'string' || !PIN_RE.test(pin)) {
    throw new SigilError(
      'config_invalid',
      `invalid issuer pin ${JSON.stringify(String(pin).slice(0, 80))}: expected sha256:<64 lowercase hex digits>`,
    );
  }
}
