/**
 * The agent's current identity (and the one it replaced). Saving is one transaction: the old
 * 'current' row becomes 'previous' and the new row becomes 'current', so a crash mid-save
 * leaves exactly one of the two identities current, never none and never a mix.
 */
import type { Statement } from 'better-sqlite3';
import type { KeyStorage } from '../../keystore/signer.js';
import { SigilError } from '../../errors.js';
import type { AgentDb } from './db.js';

/**
 * An MQTT transport certificate (agent/transport-cert.ts): what a hardware-keyed agent presents
 * to an mqtts:// broker instead of its SVID. The key is a software key made for it alone.
 */
export interface TransportCert {
  /** PKCS#8 PEM. Secret: never logged, never written to an output. */
  keyPem: string;
  /** PEM certificates, leaf first. */
  chainPem: string[];
  /** The leaf's notAfter (unix ms), as TLS will check it. */
  notAfter: number;
}

/** Times are unix milliseconds. */
export interface Identity {
  instanceId: string;
  spiffeId: string;
  bot: string;
  /** PEM certificates, leaf first, then intermediates. */
  chainPem: string[];
  /** JSON of the KeyRef (see keystore/index.ts). For software keys this contains the key. */
  keyRef: string;
  /** Where the agent keeps the key, as it knows it (the key reference; PKCS#11: the token's attributes). */
  keyStorage: KeyStorage;
  /** Whether the private key can be read out, as the agent knows it. */
  exportable: boolean;
  /**
   * What the issuer recorded for the certificate: it records only what it can verify (a TPM key
   * proven by TPM2_Certify), anything else as software/exportable. Defaults to keyStorage /
   * exportable when saving; always set when read.
   */
  issuerKeyStorage?: KeyStorage;
  issuerExportable?: boolean;
  serial: string;
  notBefore: number;
  notAfter: number;
  generation: number;
  joinMethod: string;
  issuedAt: number;
  renewAfter: number;
  /** Issued with the SVID when the request asked for one (hardware key + an mqtts:// transport). */
  transport?: TransportCert;
}

type Slot = 'current' | 'previous';

interface IdentityRow {
  instance_id: string;
  spiffe_id: string;
  bot: string;
  chain_pem: string;
  key_ref: string;
  key_storage: string;
  exportable: number;
  issuer_key_storage: string | null;
  issuer_exportable: number | null;
  serial: string;
  not_before: number;
  not_after: number;
  generation: number;
  join_method: string;
  issued_at: number;
  renew_after: number;
  transport_key_pem: string | null;
  transport_chain_pem: string | null;
  transport_not_after: number | null;
}

const KEY_STORAGES: ReadonlySet<string> = new Set<KeyStorage>(['software', 'tpm', 'pkcs11']);

export class IdentityStore {
  readonly #db: AgentDb;
  readonly #get: Statement<[Slot], IdentityRow>;
  readonly #dropPrevious: Statement<[]>;
  readonly #demoteCurrent: Statement<[]>;
  readonly #insert: Statement<[Record<string, unknown>]>;

  constructor(db: AgentDb) {
    this.#db = db;
    this.#get = db.prepare('SELECT * FROM identity WHERE slot = ?');
    this.#dropPrevious = db.prepare("DELETE FROM identity WHERE slot = 'previous'");
    this.#demoteCurrent = db.prepare("UPDATE identity SET slot = 'previous' WHERE slot = 'current'");
    this.#insert = db.prepare(`
      INSERT INTO identity (slot, instance_id, spiffe_id, bot, chain_pem, key_ref, key_storage, exportable,
        issuer_key_storage, issuer_exportable,
        serial, not_before, not_after, generation, join_method, issued_at, renew_after, saved_at,
        transport_key_pem, transport_chain_pem, transport_not_after)
      VALUES ('current', @instanceId, @spiffeId, @bot, @chainPem, @keyRef, @keyStorage, @exportable,
        @issuerKeyStorage, @issuerExportable,
        @serial, @notBefore, @notAfter, @generation, @joinMethod, @issuedAt, @renewAfter, @savedAt,
        @transportKeyPem, @transportChainPem, @transportNotAfter)`);
  }

  get(): Identity | undefined {
    return this.#read('current');
  }

  getPrevious(): Identity | undefined {
    return this.#read('previous');
  }

  /** Replace the current identity; the replaced one is kept as 'previous'. */
  save(id: Identity, savedAt: number = Date.now()): void {
    validateIdentity(id);
    this.#db.transaction(() => {
      this.#dropPrevious.run();
      this.#demoteCurrent.run();
      const { transport, ...rest } = id;
      this.#insert.run({
        ...rest,
        chainPem: JSON.stringify(id.chainPem),
        transportKeyPem: transport?.keyPem ?? null,
        transportChainPem: transport ? JSON.stringify(transport.chainPem) : null,
        transportNotAfter: transport?.notAfter ?? null,
        exportable: id.exportable ? 1 : 0,
        issuerKeyStorage: id.issuerKeyStorage ?? id.keyStorage,
        issuerExportable: (id.issuerExportable ?? id.exportable) ? 1 : 0,
        savedAt,
      });
    })();
  }

  #read(slot: Slot): Identity | undefined {
    const r = this.#get.get(slot);
    if (!r) return undefined;
    const chainPem = pemList(r.chain_pem);
    const transportChain = r.transport_chain_pem === null ? [] : pemList(r.transport_chain_pem);
    const issuerKeyStorage = r.issuer_key_storage ?? r.key_storage;
    if (!chainPem || !transportChain || !KEY_STORAGES.has(r.key_storage) || !KEY_STORAGES.has(issuerKeyStorage)) {
      // Only a hand-edited or corrupted database gets here; name what is wrong, not a stack.
      throw new SigilError('internal', `agent state: the ${slot} identity row is corrupted`);
    }
    return {
      instanceId: r.instance_id,
      spiffeId: r.spiffe_id,
      bot: r.bot,
      chainPem,
      keyRef: r.key_ref,
      keyStorage: r.key_storage as KeyStorage,
      exportable: r.exportable === 1,
      issuerKeyStorage: issuerKeyStorage as KeyStorage,
      issuerExportable: (r.issuer_exportable ?? r.exportable) === 1,
      serial: r.serial,
      notBefore: r.not_before,
      notAfter: r.not_after,
      generation: r.generation,
      joinMethod: r.join_method,
      issuedAt: r.issued_at,
      renewAfter: r.renew_after,
      ...(r.transport_key_pem !== null && r.transport_not_after !== null && transportChain.length > 0
        ? { transport: { keyPem: r.transport_key_pem, chainPem: transportChain, notAfter: r.transport_not_after } }
        : {}),
    };
  }
}

/** A stored JSON array of PEM strings; undefined when it is not one. */
function pemList(json: string): string[] | undefined {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return undefined;
  }
  return Array.isArray(v) && v.every((c) => typeof c === 'string') ? (v as string[]) : undefined;
}

/**
 * Identities come from already-verified issuer responses, so a bad one here is a bug in the
 * caller (TypeError), but we still refuse it before touching the row we would replace.
 */
function validateIdentity(id: Identity): void {
  const problems: string[] = [];
  for (const k of ['instanceId', 'spiffeId', 'bot', 'keyRef', 'serial', 'joinMethod'] as const) {
    if (typeof id[k] !== 'string' || id[k].length === 0) problems.push(`${k} must be a non-empty string`);
  }
  if (
    !Array.isArray(id.chainPem) ||
    id.chainPem.length === 0 ||
    !id.chainPem.every((c) => typeof c === 'string' && c.length > 0)
  ) {
    problems.push('chainPem must be a non-empty array of PEM strings');
  }
  for (const k of ['notBefore', 'notAfter', 'issuedAt', 'renewAfter', 'generation'] as const) {
    if (!Number.isSafeInteger(id[k])) problems.push(`${k} must be an integer`);
  }
  if (id.notAfter <= id.notBefore) problems.push('notAfter must be after notBefore');
  if (!KEY_STORAGES.has(id.keyStorage)) problems.push(`keyStorage ${String(id.keyStorage)} is unknown`);
  if (typeof id.exportable !== 'boolean') problems.push('exportable must be a boolean');
  if (id.issuerKeyStorage !== undefined && !KEY_STORAGES.has(id.issuerKeyStorage))
    problems.push(`issuerKeyStorage ${String(id.issuerKeyStorage)} is unknown`);
  if (id.issuerExportable !== undefined && typeof id.issuerExportable !== 'boolean')
    problems.push('issuerExportable must be a boolean');
  const t = id.transport;
  if (t !== undefined) {
    if (typeof t.keyPem !== 'string' || !t.keyPem.includes('PRIVATE KEY'))
      problems.push('transport.keyPem must be a PKCS#8 PEM');
    if (
      !Array.isArray(t.chainPem) ||
      t.chainPem.length === 0 ||
      !t.chainPem.every((c) => typeof c === 'string' && c.length > 0)
    )
      problems.push('transport.chainPem must be a non-empty array of PEM strings');
    if (!Number.isSafeInteger(t.notAfter)) problems.push('transport.notAfter must be an integer');
  }
  if (typeof id.keyRef === 'string') {
    try {
      JSON.parse(id.keyRef);
    } catch {
      problems.push('keyRef must be JSON');
    }
  }
  if (problems.length > 0) throw new TypeError(`invalid identity: ${problems.join('; ')}`);
}
