/**
 * `sigil server rotate-key` steps on a running issuer, without a restart.
 *
 * The issuer watches what a step writes — `ca/rotating-keys.json` and the three credential key
 * files (./credential-keys.ts) — by the identity of each file (inode, size, mtime, ctime), every
 * KEY_WATCH_MS. A change is read once it has held still for one poll, so a set of files being
 * copied from another issuer (runbook "Several issuers on PostgreSQL") is not read half-way, and
 * never while a rotate-key holds its lock. SIGHUP (`systemctl reload sigil-server`) reads at once.
 *
 * A reload reads through the same checked readers as a start (O_NOFOLLOW, regular file, mode,
 * owner, the list's schema) but creates no key: a missing file on a running issuer is a copy
 * still under way, not a first start. Then, per kind, against the list:
 *
 *   signing key in service   the new keys and list replace the old ones (ctx.credentials, one
 *                            assignment: a request signs with the old set or the new, never a mix)
 *   listed as withdrawn      a compromise rotation ran elsewhere and its new key file has not
 *                            arrived: that key is *halted* at once — it signs nothing
 *                            (signing_key_withdrawn) and is no longer published — rather than keep
 *                            a stolen key in service until the file comes; the next reload that
 *                            finds a key in service lifts it
 *   listed as retired        an activation's list came before its key file (or an activation
 *                            stopped half-way): that kind keeps its signer and its list entries —
 *                            the old key is still trusted for the overlap — until the key file
 *                            arrives; the other kinds take the new list
 *   listed as next           the key file came before its list: that kind waits for the list too
 *
 * A file that fails a check leaves everything as it was; the refusal is logged once per change. A
 * list older than the one in use is refused (copied back from an issuer that missed a step). And
 * whatever the outcome, every withdrawal this process has read — in any list, or in the store —
 * is applied over the whole key set: such a signer is halted, such a staged or retired key is not
 * published. Nothing a later read says undoes one.
 *
 * Besides the files, the store's memory of withdrawn keys (./withdrawn-keys.ts), looked at with
 * every poll: a key it names is halted or unpublished whatever the files say — a `ca/` restored
 * from before a compromise rotation, or a peer on PostgreSQL the rotation's files have not reached.
 *
 * Who could use this against the issuer: someone who can write `ca/` as the issuer's user could
 * before too (a restart read the same files), and every reader still refuses files others can
 * write or that another user owns. A list planted to withdraw the signing key stops SSH and JWT
 * issuance (a denial of service, loud: error log, `sigil_signing_key_withdrawn`, doctor) — never
 * signing with a key the operator did not put there.
 */
import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import type { Logger } from '../util/log.js';
import { SigilError } from '../errors.js';
import { credentialKeyPaths, readCredentialKeys } from './credential-keys.js';
import {
  createCredentialAuthorities,
  signingPublicKeys as signingOf,
  type CredentialAuthorities,
} from './credentials/authorities.js';
import {
  keyId,
  outOfServiceMessage,
  readRotatingState,
  rotateLockHolder,
  rotatingKeysPath,
  signingKeysOutOfService,
  ROTATABLE_KEYS,
  type RotatableKey,
  type RotatingKey,
} from './rotating-keys.js';
import type { WithdrawnKeyRecord } from './store/types.js';
import { spkiSha256, storeWithdrawalMessage, withdrawnSigningKeys, type StoreWithdrawal } from './withdrawn-keys.js';
import { assertDataDirSecure } from './data-dir-perms.js';

/** How often a running issuer looks for a rotate-key step (a step shows within two of these). */
export const KEY_WATCH_MS = 5_000;

/** What a reload did. */
export type KeyReload =
  | { result: 'unchanged' }
  /** The new keys and list are in use; `changes` says what differs (empty: same keys, e.g. a touched file). */
  | { result: 'applied'; changes: string[]; halted: RotatableKey[] }
  /** A key file has not caught up with the list (retired); nothing changed. */
  | { result: 'waiting'; reason: string }
  /** A file failed a check; nothing changed. */
  | { result: 'refused'; error: SigilError };

export interface KeyReloaderOptions {
  dataDir: string;
  trustDomain: string;
  /** Holds the credentials in use: the issuer context (ctx.credentials is replaced on a reload). */
  target: { credentials: CredentialAuthorities };
  log: Logger;
  now(): number;
  /**
   * The store's memory of withdrawn keys (./withdrawn-keys.ts), looked at by refreshFromStore():
   * a key it names is halted even when the files say nothing of it. Absent: files only.
   */
  store?: { withdrawnKeys(): Promise<WithdrawnKeyRecord[]> };
  /**
   * The files' stamp taken before the credentials in use were read (keyFilesStamp): a step that
   * lands between that read and this reloader's construction is then still seen as a change.
   * Default: taken now.
   */
  stamp?: string;
}

/** Polls a change may stay unsettled before it is read anyway (a file rewritten over and over). */
export const MAX_UNSETTLED_POLLS = 6;

export class KeyReloader {
  /** Stamp of the files the credentials in use were read from (or the last reload tried). */
  #tried: string;
  /** Stamp seen by the previous poll: a change is read once it holds still for one poll. */
  #seen: string;
  /** Polls in a row that saw the files change again. */
  #unsettled = 0;
  /** The last problem logged, so a stable one is logged once, not every poll. */
  #said = '';
  /**
   * The withdrawn keys the store remembers, keyed `kind:spki sha256`. It only grows within the
   * process: a read that lost a race, or rows a database writer deleted, never lift a halt.
   * `#storeMoved`: it grew since the last reload.
   */
  readonly #remembered = new Map<string, WithdrawnKeyRecord>();
  #storeMoved = false;
  /** The store read in flight: ticks and SIGHUPs share it rather than racing each other. */
  #refreshing: Promise<void> | undefined;
  #storeSaid = '';
  /**
   * Every key (`kind:spki sha256`) a list read by this process named as withdrawn. A withdrawal is
   * never undone by a later read: a list copied back from an issuer that missed the step, or
   * removed, must not put a stolen key back into service.
   */
  readonly #withdrawnSeen = new Set<string>();
  /** Whether the last reload was refused or waiting (the `sigil_key_reload_pending` gauge). */
  #lastFailed = false;

  constructor(private readonly opts: KeyReloaderOptions) {
    this.#tried = this.#seen = opts.stamp ?? keyFilesStamp(opts.dataDir);
    this.#noteWithdrawn(opts.target.credentials.rotating);
    // Withdrawals known at start count as learned now: answers stored before may be the old key's.
    this.opts.target.credentials = this.#learned(undefined, opts.target.credentials);
  }

  /**
   * `next` with withdrawalLearnedAt moved to now for each kind whose withdrawals grew since `prev`
   * (a new withdrawn entry, a new halt), kept from `prev` otherwise.
   */
  #learned(prev: CredentialAuthorities | undefined, next: CredentialAuthorities): CredentialAuthorities {
    const count = (c: CredentialAuthorities | undefined, kind: RotatableKey): number =>
      c
        ? c.rotating.filter((k) => k.kind === kind && k.state === 'withdrawn').length + (c.halted.has(kind) ? 1 : 0)
        : 0;
    const at = new Map(prev?.withdrawalLearnedAt ?? []);
    let moved = false;
    for (const kind of ROTATABLE_KEYS)
      if (count(next, kind) > count(prev, kind)) {
        at.set(kind, this.opts.now());
        moved = true;
      }
    if (!moved && prev && next.withdrawalLearnedAt === prev.withdrawalLearnedAt) return next;
    return { ...next, withdrawalLearnedAt: at };
  }

  /**
   * One poll: reload if the files changed and have held still since the previous poll (or kept
   * changing for MAX_UNSETTLED_POLLS), or if the store's withdrawn keys changed at its last look
   * (refreshFromStore). Not while a live `rotate-key` holds its lock (one left by a process that
   * is gone is ignored).
   */
  poll(): KeyReload {
    const stamp = keyFilesStamp(this.opts.dataDir);
    const settled = stamp === this.#seen;
    this.#seen = stamp;
    if (this.#storeMoved) return this.reload();
    if (stamp === this.#tried) {
      this.#unsettled = 0;
      return { result: 'unchanged' };
    }
    if (!settled && ++this.#unsettled < MAX_UNSETTLED_POLLS) return { result: 'unchanged' };
    const holder = rotateLockHolder(this.opts.dataDir);
    if (holder !== undefined) return { result: 'unchanged' };
    if (!settled)
      this.opts.log.warn(
        { code: 'key_files_unsettled' },
        `the credential key files kept changing for ${MAX_UNSETTLED_POLLS} polls: reading them anyway`,
      );
    return this.reload();
  }

  /**
   * Look at the store's withdrawn keys (one query); the next poll reloads if they changed. A store
   * that cannot be read keeps what was last seen (said once); `throwOnError` for the start, which
   * must not serve on an unknown memory.
   */
  refreshFromStore(throwOnError = false): Promise<void> {
    if (throwOnError) return this.#readStore(true);
    this.#refreshing ??= this.#readStore(false).finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  async #readStore(throwOnError: boolean): Promise<void> {
    const { store, log } = this.opts;
    if (!store) return;
    let recs: WithdrawnKeyRecord[];
    try {
      recs = await store.withdrawnKeys();
    } catch (e) {
      if (throwOnError)
        throw new SigilError(
          e instanceof SigilError && e.code === 'config_invalid' ? 'config_invalid' : 'store_unavailable',
          `cannot read the withdrawn signing keys from the store at start (a key a compromise rotation withdrew must not sign): ${(e as Error).message}`,
          { cause: e },
        );
      const msg = (e as Error).message;
      if (msg !== this.#storeSaid) log.warn({ err: e }, `cannot read the withdrawn keys from the store: ${msg}`);
      this.#storeSaid = msg;
      return;
    }
    this.#storeSaid = '';
    for (const r of recs) {
      const k = `${r.kind}:${r.spkiSha256}`;
      if (this.#remembered.has(k)) continue;
      this.#remembered.set(k, r);
      this.#storeMoved = true;
    }
  }

  /** The kinds whose signing key, in use now, the store remembers as withdrawn (server start refuses those). */
  rememberedWithdrawals(): StoreWithdrawal[] {
    return withdrawnSigningKeys(signingOf(this.opts.target.credentials), [...this.#remembered.values()]);
  }

  /**
   * Apply what is known of withdrawn keys (the lists read, the store) to the credentials in use,
   * without reading any file: a start calls it once the store was read, so that a staged or
   * retired key the store remembers is not published from the first request on.
   */
  applyKnownWithdrawals(): void {
    const cur = this.opts.target.credentials;
    const next = this.#scrub(cur);
    if (next !== cur) {
      this.#logNewHalts(cur, next);
      this.opts.target.credentials = this.#learned(cur, next);
    }
  }

  /**
   * Read the files now (SIGHUP, or a poll that saw them change) and apply them if they hold a
   * consistent set. Whatever the outcome, no key a list or the store ever withdrew stays in service.
   */
  reload(): KeyReload {
    const { dataDir, target } = this.opts;
    const stamp = keyFilesStamp(dataDir);
    this.#tried = this.#seen = stamp;
    this.#unsettled = 0;
    this.#storeMoved = false;
    const now = this.opts.now();
    const prev = target.credentials;
    let outcome: KeyReload;
    try {
      // As at a start: ca/ or the data directory writable by others is refused before any file is read.
      assertDataDirSecure(dataDir);
      const list = readRotatingState(dataDir);
      // Withdrawals first, before anything else can fail: a key file that fails a check must not
      // keep a withdrawn key signing.
      this.#noteWithdrawn(list.keys);
      if (list.sequence < prev.rotatingSequence)
        throw new SigilError(
          'config_invalid',
          `${rotatingKeysPath(dataDir)} is older than the list in use (sequence ${list.sequence} < ${prev.rotatingSequence}${list.keys.length === 0 && list.sequence === 0 ? ': removed?' : ''}): copied from an issuer that missed a step, or put back from a backup? A running issuer takes only newer lists; copy the current one from the issuer where rotate-key last ran (a restart takes any list)`,
        );
      const keys = readCredentialKeys(dataDir);
      const signing = { jwt: keys.jwtSigning, 'ssh-user': keys.sshUserCa, 'ssh-host': keys.sshHostCa };
      const out = signingKeysOutOfService(signing, list.keys, now);
      const halted = new Map<RotatableKey, string>();
      for (const o of out.filter((x) => x.entry.state === 'withdrawn'))
        halted.set(
          o.kind,
          `${outOfServiceMessage(dataDir, o, list.keys)}; this issuer stopped signing with it and publishing it when it read the list`,
        );
      // What this process read before, and the store, may know what this list does not (a restored
      // ca/, files not yet copied).
      for (const kind of ROTATABLE_KEYS)
        if (!halted.has(kind)) {
          const why = this.#knownWithdrawn(kind, signing[kind]);
          if (why) halted.set(kind, why);
        }
      // A kind whose files are half-way through a copy of one activation waits for the rest: it
      // keeps its signer and its entries of the list in use. Either the new list retires the key
      // file still in place (the old key is still trusted for the overlap), or the new key file
      // came first and the list in place still has it as the next key (taking it now would drop
      // the old key from every key set published before the list comes).
      const waiting = new Map<RotatableKey, string>();
      for (const o of out)
        if (o.entry.state === 'retired' && !halted.has(o.kind))
          waiting.set(o.kind, `${rotatingKeysPath(dataDir)} retires the ${o.kind} key file still in place`);
      for (const kind of ROTATABLE_KEYS) {
        const mine = spkiSha256(signing[kind]);
        const isNext = list.keys.some((k) => k.kind === kind && k.state === 'next' && spkiSha256(k.publicKey) === mine);
        if (isNext && !halted.has(kind) && mine !== spkiSha256(signingOf(prev)[kind]))
          waiting.set(kind, `the ${kind} key file is the key ${rotatingKeysPath(dataDir)} still lists as next`);
      }
      const waitReason = (): string =>
        `keeping the ${[...waiting.keys()].join(', ')} keys in use while the files of a rotate-key step are copied: ${[...waiting.values()].join('; ')}; the step is taken once the key file and the list both came (copy the list first, then the key file), or, if rotate-key ran in this data directory and stopped half-way, run it again here (sigil server rotate-key --data-dir ${dataDir} --key ${[...waiting.keys()].join('|')})`;
      if (waiting.size > 0 && halted.size === 0) {
        outcome = { result: 'waiting', reason: waitReason() };
      } else {
        const waits = new Set(waiting.keys());
        const built = createCredentialAuthorities(
          {
            ...keys,
            rotating: [
              ...list.keys.filter((k) => !waits.has(k.kind)),
              ...prev.rotating.filter((k) => waits.has(k.kind)),
            ],
            rotatingSequence: list.sequence,
            halted,
          },
          this.opts.trustDomain,
        );
        const next: CredentialAuthorities = {
          ...built,
          ...(waits.has('jwt') ? { jwt: prev.jwt } : {}),
          ...(waits.has('ssh-user') ? { sshUser: prev.sshUser } : {}),
          ...(waits.has('ssh-host') ? { sshHost: prev.sshHost } : {}),
        };
        // Last, over the whole set: a waiting kind's previous signer, or a staged or retired key
        // that the store or an earlier list withdrew, must not come back through the merge.
        const final = this.#learned(prev, this.#scrub(next));
        const changes = describeChanges(prev, final);
        target.credentials = final;
        outcome = { result: 'applied', changes, halted: [...final.halted.keys()] };
        if (waits.size > 0) this.opts.log.warn({ code: 'key_reload_waiting' }, waitReason());
      }
    } catch (e) {
      const error =
        e instanceof SigilError
          ? e
          : new SigilError('config_invalid', `cannot read the credential keys: ${(e as Error).message}`, { cause: e });
      outcome = { result: 'refused', error };
    }
    // Whatever the files say, the keys in use must not include one withdrawn by a list this
    // process read or by the store.
    if (outcome.result !== 'applied') this.applyKnownWithdrawals();
    this.#report(outcome);
    this.#lastFailed = outcome.result === 'refused' || outcome.result === 'waiting';
    return outcome;
  }

  /** Whether the last reload left the files unread (refused) or a kind waiting for its key file: the `sigil_key_reload_pending` gauge. */
  pending(): boolean {
    return this.#lastFailed;
  }

  /** The kinds halted now, for the `sigil_signing_key_withdrawn` gauge. */
  halted(): RotatableKey[] {
    return [...this.opts.target.credentials.halted.keys()];
  }

  #noteWithdrawn(keys: readonly RotatingKey[]): void {
    for (const k of keys) if (k.state === 'withdrawn') this.#withdrawnSeen.add(`${k.kind}:${spkiSha256(k.publicKey)}`);
  }

  /** Why the signing key `key` of `kind` is withdrawn, if a list this process read or the store says so. */
  #knownWithdrawn(kind: RotatableKey, key: KeyObject): string | undefined {
    const id = `${kind}:${spkiSha256(key)}`;
    const r = this.#remembered.get(id);
    if (r) return rememberedMessage(this.opts.dataDir, { kind, at: r.at });
    return this.#withdrawnSeen.has(id) ? seenMessage(this.opts.dataDir, kind) : undefined;
  }

  /**
   * `cas` with every known withdrawal applied: a signer whose key was withdrawn is halted, and a
   * staged or retired entry whose key was withdrawn is marked withdrawn (never published). The
   * same object when nothing changes.
   */
  #scrub(cas: CredentialAuthorities): CredentialAuthorities {
    const signing = signingOf(cas);
    let halted: Map<RotatableKey, string> | undefined;
    for (const kind of ROTATABLE_KEYS) {
      if (cas.halted.has(kind)) continue;
      const why = this.#knownWithdrawn(kind, signing[kind]);
      if (why) (halted ??= new Map(cas.halted)).set(kind, why);
    }
    let changed = false;
    const rotating = cas.rotating.map((k) => {
      if (k.state === 'withdrawn') return k;
      const id = `${k.kind}:${spkiSha256(k.publicKey)}`;
      if (!this.#remembered.has(id) && !this.#withdrawnSeen.has(id)) return k;
      changed = true;
      return { ...k, state: 'withdrawn' as const };
    });
    if (!halted && !changed) return cas;
    return { ...cas, ...(halted ? { halted } : {}), ...(changed ? { rotating } : {}) };
  }

  #logNewHalts(before: CredentialAuthorities, after: CredentialAuthorities): void {
    for (const [kind, why] of after.halted)
      if (!before.halted.has(kind)) this.opts.log.error({ kind, code: 'signing_key_withdrawn' }, why);
  }

  #report(o: KeyReload): void {
    const { log } = this.opts;
    if (o.result === 'applied') {
      this.#said = '';
      for (const kind of o.halted)
        log.error(
          { kind, code: 'signing_key_withdrawn' },
          this.opts.target.credentials.halted.get(kind) ?? `the ${kind} signing key was withdrawn`,
        );
      if (o.changes.length > 0)
        log.info({ changes: o.changes }, `reloaded the credential keys: ${o.changes.join('; ')}`);
      return;
    }
    if (o.result === 'unchanged') return;
    const text = o.result === 'waiting' ? o.reason : `${o.error.code}: ${o.error.message}`;
    if (text === this.#said) return;
    this.#said = text;
    if (o.result === 'waiting') log.warn({ code: 'key_reload_waiting' }, o.reason);
    else log.error({ code: o.error.code }, `credential keys not reloaded, the ones in use stay: ${o.error.message}`);
  }
}

const seenMessage = (dir: string, kind: RotatableKey): string =>
  `the ${kind} signing key in ${dir}/ca was withdrawn by a compromise rotation (a list this issuer read said so; the files now in place do not): copy the current key file and ca/rotating-keys.json from the issuer where the rotation ran; only if no issuer has it, make a fresh one: sigil server rotate-key --data-dir ${dir} --key ${kind} --overlap 0; this issuer stopped signing with it and publishing it`;

const rememberedMessage = (dir: string, w: StoreWithdrawal): string =>
  `${storeWithdrawalMessage(dir, w)}; this issuer stopped signing with it and publishing it when it read the store`;

/** What differs between two credential sets, in words an operator can match to rotate-key output. */
function describeChanges(prev: CredentialAuthorities, next: CredentialAuthorities): string[] {
  const out: string[] = [];
  for (const kind of ROTATABLE_KEYS) {
    const before = keyId(signingOf(prev)[kind], kind);
    const after = keyId(signingOf(next)[kind], kind);
    if (before !== after) out.push(`${kind} signs with ${after} (was ${before})`);
    const beside = (c: CredentialAuthorities) =>
      c.rotating
        .filter((k) => k.kind === kind)
        .map((k) => `${k.state} ${keyId(k.publicKey, kind)}`)
        .sort()
        .join(', ');
    const b = beside(prev);
    const a = beside(next);
    if (b !== a) out.push(`${kind} rotation list: ${a || 'empty'} (was ${b || 'empty'})`);
    if (next.halted.has(kind) && !prev.halted.has(kind)) out.push(`${kind} halted`);
    if (prev.halted.has(kind) && !next.halted.has(kind)) out.push(`${kind} no longer halted`);
  }
  return out;
}

/** The identity of every file a rotate-key step writes; a missing one is stamped as such. */
export function keyFilesStamp(dataDir: string): string {
  const p = credentialKeyPaths(dataDir);
  return [rotatingKeysPath(dataDir), p.jwtSigning, p.sshUserCa, p.sshHostCa]
    .map((f) => {
      try {
        const st = fs.lstatSync(f, { bigint: true });
        return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      } catch {
        return '-';
      }
    })
    .join('|');
}
