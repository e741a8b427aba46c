/**
 * Durable key/value settings of the agent (string values, small). Used for identifiers that
 * must survive a crash but belong to no identity: the MQTT bootstrap response id, the token
 * fingerprint of the last successful token join.
 */
import type { Statement } from 'better-sqlite3';
import type { AgentDb } from './db.js';

const KEY_RE = /^[a-z0-9_.-]{1,64}$/;
const MAX_VALUE = 4096;

export class SettingsStore {
  readonly #get: Statement<[string], { value: string }>;
  readonly #put: Statement<[string, string, number]>;
  readonly #insertNew: Statement<[string, string, number]>;
  readonly #byPrefix: Statement<[number, string], { key: string; value: string }>;

  constructor(db: AgentDb) {
    this.#get = db.prepare('SELECT value FROM settings WHERE key = ?');
    this.#put = db.prepare('INSERT OR REPLACE INTO settings (key, value, updated_at) VALUES (?, ?, ?)');
    this.#insertNew = db.prepare('INSERT OR IGNORE INTO settings (key, value, updated_at) VALUES (?, ?, ?)');
    this.#byPrefix = db.prepare('SELECT key, value FROM settings WHERE substr(key, 1, ?) = ? ORDER BY key');
  }

  /** Every setting whose key starts with `prefix`, by key. */
  list(prefix: string): Array<{ key: string; value: string }> {
    assertKey(prefix);
    return this.#byPrefix.all(prefix.length, prefix);
  }

  get(key: string): string | undefined {
    assertKey(key);
    return this.#get.get(key)?.value;
  }

  set(key: string, value: string, at: number = Date.now()): void {
    assertKey(key);
    assertValue(value);
    this.#put.run(key, value, at);
  }

  /** Store `value` unless the key already has one; returns the value that is stored (first writer wins). */
  getOrCreate(key: string, make: () => string, at: number = Date.now()): string {
    assertKey(key);
    const existing = this.#get.get(key)?.value;
    if (existing !== undefined) return existing;
    const value = make();
    assertValue(value);
    this.#insertNew.run(key, value, at);
    return this.#get.get(key)!.value;
  }
}

function assertKey(key: string): void {
  if (typeof key !== 'string' || !KEY_RE.test(key)) throw new TypeError(`settings: invalid key ${JSON.stringify(key)}`);
}

function assertValue(value: string): void {
  if (typeof value !== 'string' || value.length > MAX_VALUE)
    throw new TypeError('settings: value must be a string of at most 4096 characters');
}
