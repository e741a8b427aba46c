/**
 * The identity keys the agent makes and retires. Every join and renewal makes a new key where
 * `key_storage` says — software (the key is a row in agent.db), the tpm join's TPM, or a
 * PKCS#11 token — and an old key is retired once nothing needs it any more.
 *
 * A key is *needed* while it is the current identity's or a pending request's (the outbox keeps
 * the new key of a request until its answer is committed). Only PKCS#11 keys need retiring: they
 * are objects on a token, which would pile up; software and TPM keys exist only as the rows that
 * refer to them. Retiring runs after a tick, so an old key is destroyed only once the identity
 * that replaced it is committed — never before — and a key whose request was refused (or never
 * sent) does not stay behind on the token. The replaced identity's key is also looked at before
 * a tick, for when a crash came between the commit and its removal.
 *
 * Not covered: a crash between generating a key and persisting its request (nothing durable
 * names the key yet) leaves the pair on the token; docs/pkcs11.md says how to spot it.
 */
import { randomBytes } from 'node:crypto';
import { toSigilError } from '../errors.js';
import {
  createPkcs11Signer,
  createSigner,
  createTpmSigner,
  formatPkcs11Uri,
  loadSigner,
  parseKeyRef,
  removeKey,
  serializeKeyRef,
  type KeyRef,
  type KeyStorage,
  type Signer,
  type TpmAccesses,
} from '../keystore/index.js';
import type { Logger } from '../util/log.js';
import type { AgentConfig } from './config.js';
import type { NewKey } from './requests.js';
import type { AgentState } from './state/index.js';

/** Agent setting: the key reference (JSON) of the last replaced PKCS#11 key destroyed. */
const RETIRED_KEY_SETTING = 'keystore.retired';

/** Where a key lives and whether it can be read out, as the agent knows it. */
export interface KeyFacts {
  keyStorage: KeyStorage;
  exportable: boolean;
}

interface MadeKey extends KeyFacts {
  signer: Signer;
}

export class IdentityKeys {
  /** Keys this process made whose fate is not settled yet, by their serialised reference. */
  readonly #made = new Map<string, MadeKey>();

  constructor(
    private readonly cfg: Pick<AgentConfig, 'keyStorage' | 'tpmTcti' | 'pkcs11'>,
    private readonly log: Logger,
    /** The agent's TPMs: a TPM key is made through the same access as everything else the agent runs on that TPM. */
    private readonly tpm: TpmAccesses,
    /** Told of every key made (the join method's hook: the tpm join finds the keys it certifies this way). */
    private readonly onKeyCreated?: (key: Signer) => void,
  ) {}

  /** A new identity key where the config says keys live. */
  async create(): Promise<NewKey> {
    const k = await this.#make();
    this.onKeyCreated?.(k.signer);
    this.#made.set(serializeKeyRef(k.ref), {
      signer: k.signer,
      keyStorage: k.signer.storage,
      exportable: k.signer.exportable,
    });
    return k;
  }

  async #make(): Promise<NewKey> {
    switch (this.cfg.keyStorage) {
      case 'software':
        return createSigner('software');
      case 'pkcs11': {
        const p = this.cfg.pkcs11!;
        // A fresh label per key: the old key stays on the token until the new one is committed.
        return createPkcs11Signer({
          module: p.module,
          tokenLabel: p.tokenLabel,
          ...(p.pinFile !== undefined ? { pinFile: p.pinFile } : {}),
          ...(p.pinEnv !== undefined ? { pinEnv: p.pinEnv } : {}),
          keyLabel: `${p.keyLabelPrefix}-${randomBytes(6).toString('hex')}`,
        });
      }
      case 'tpm':
        return createTpmSigner(this.tpm.for(this.cfg.tpmTcti!));
    }
  }

  /**
   * The facts about the key of a request being committed. A key made by this process reports
   * them itself (a PKCS#11 signer read CKA_EXTRACTABLE / CKA_SENSITIVE when it was generated);
   * a request resent after a restart asks the token again.
   */
  facts(refJson: string): KeyFacts {
    const made = this.#made.get(refJson);
    if (made) return { keyStorage: made.keyStorage, exportable: made.exportable };
    const ref = parseKeyRef(refJson);
    if (ref.storage !== 'pkcs11') return { keyStorage: ref.storage, exportable: ref.storage === 'software' };
    try {
      const s = loadSigner(ref);
      try {
        return { keyStorage: 'pkcs11', exportable: s.exportable };
      } finally {
        s.close?.();
      }
    } catch (err) {
      // The certificate is issued and must be stored whatever the token says now; Sigil made
      // this key with CKA_SENSITIVE=true and CKA_EXTRACTABLE=false.
      this.log.warn(
        { key: formatPkcs11Uri(ref), code: toSigilError(err).code },
        'could not read the key attributes from the token; recording the key as generated (not exportable)',
      );
      return { keyStorage: 'pkcs11', exportable: false };
    }
  }

  /**
   * Destroy the PKCS#11 keys nothing needs: keys this process made that are neither current
   * nor pending, the keys of requests that were pending when the tick started and are no longer
   * (refused after a restart), and the key of the identity the last renewal replaced. Never
   * throws: a key that cannot be removed now is logged, and the replaced one is tried again.
   */
  retire(state: AgentState, pendingAtStart: readonly string[]): void {
    try {
      const current = state.getIdentity();
      const needed = neededKeys(state);
      const unneeded = new Set<string>();
      for (const [json, made] of this.#made) {
        // A PKCS#11 signer holds a session; the next use opens the key again from its reference.
        if (made.keyStorage === 'pkcs11') made.signer.close?.();
        if (json === current?.keyRef || !needed.has(json)) this.#made.delete(json);
        if (!needed.has(json)) unneeded.add(json);
      }
      for (const json of pendingAtStart) if (!needed.has(json)) unneeded.add(json);
      for (const json of unneeded) this.#remove(json);
      this.#retireReplaced(state, needed);
    } catch (err) {
      this.log.warn(
        { code: toSigilError(err).code },
        `retiring old identity keys failed: ${toSigilError(err).message}`,
      );
    }
  }

  /**
   * Only the key of the identity the last renewal replaced, if it is still on the token (a crash
   * right after the commit, or the token was away). Called before a renewal as well as after:
   * the renewal makes the current identity the previous one, and the key it replaced would
   * otherwise never be looked at again. Never throws.
   */
  retireReplaced(state: AgentState): void {
    try {
      this.#retireReplaced(state, neededKeys(state));
    } catch (err) {
      this.log.warn(
        { code: toSigilError(err).code },
        `retiring the replaced identity key failed: ${toSigilError(err).message}`,
      );
    }
  }

  /** Remembered in a setting once done, so that it is not tried at every tick. */
  #retireReplaced(state: AgentState, needed: ReadonlySet<string>): void {
    const previous = state.getPreviousIdentity();
    if (!previous || needed.has(previous.keyRef) || state.getSetting(RETIRED_KEY_SETTING) === previous.keyRef) return;
    if (pkcs11Ref(previous.keyRef) === undefined) return;
    if (this.#remove(previous.keyRef)) state.setSetting(RETIRED_KEY_SETTING, previous.keyRef);
  }

  /** Remove one key; true when it is gone (removed now, or already). */
  #remove(json: string): boolean {
    const ref = pkcs11Ref(json);
    if (!ref) return true;
    const uri = formatPkcs11Uri(ref);
    try {
      const removed = removeKey(ref);
      this.log.info(
        { key: uri, removed },
        removed ? 'removed an old identity key from the token' : 'an old identity key was already gone from the token',
      );
      return true;
    } catch (err) {
      const e = toSigilError(err);
      this.log.warn({ key: uri, code: e.code }, `could not remove an old identity key from the token: ${e.message}`);
      return false;
    }
  }
}

/** The keys the agent cannot do without: the current identity's and every pending request's. */
function neededKeys(state: AgentState): Set<string> {
  const needed = new Set(state.getOutbox().flatMap((e) => (e.pendingKeyRef ? [e.pendingKeyRef] : [])));
  const current = state.getIdentity();
  if (current) needed.add(current.keyRef);
  return needed;
}

function pkcs11Ref(json: string): Extract<KeyRef, { storage: 'pkcs11' }> | undefined {
  try {
    const ref = parseKeyRef(json);
    return ref.storage === 'pkcs11' ? ref : undefined;
  } catch {
    return undefined;
  }
}
