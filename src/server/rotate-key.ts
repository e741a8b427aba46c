/**
 * `sigil server rotate-key --key jwt|ssh-user|ssh-host|admin-token` (docs/runbook.md "Rotate a
 * key"): replace one of the issuer's long-lived secrets in place.
 *
 * Signing keys (the JWT-SVID key, the SSH user and host CAs), in two steps as SPIRE does with its
 * own keys, so that nothing a relying party holds stops verifying:
 *
 *   --stage     a new key of the same algorithm is made (`<key file>.next`, 0600) and published
 *               beside the signing key (./rotating-keys.ts) — the JWKS, the SPIFFE bundle,
 *               `ca export` and the SSH trust lines of every credential answer list it. It signs
 *               nothing yet. Wait until every trust file was refreshed: a credential's life
 *               (≤ 24 h) plus a margin, DEFAULT_OVERLAP_S.
 *   (activate)  the staged key becomes the signing key; the old public key stays published until
 *               `now + overlap` (default 25 h), so JWT-SVIDs and SSH certificates signed before
 *               still verify for the rest of their life. Without a staged key, a new key is made
 *               and activated at once (relying parties that have not refreshed refuse the new
 *               credentials until they do: the result says so).
 *   --overlap 0 the compromise case: a fresh key is made and published alone from now on. The staged key (it sat in the same ca/) and the retired keys of that kind (a
 *               backup older than their activation holds their private halves) are withdrawn too.
 *   --cancel    drop a staged key.
 *
 * A running issuer picks each step up by itself within RELOAD_WITHIN_S (./key-reload.ts), at once
 * on SIGHUP; a restart does it too.
 *
 * The admin credential: a new random token; its hash replaces the old one in the store (every
 * issuer on the store refuses the old token at once, and the fleet-view sessions it opened end at
 * their next request), then `admin.token` is rewritten.
 *
 * Every step is one audit row (`key_staged`, `key_rotated`, `key_stage_cancelled`) naming the keys
 * (kid or SSH fingerprint; never a secret). The store is opened first, so an unreachable store
 * changes nothing on disk.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { basename, dirname } from 'node:path';
import { SigilError } from '../errors.js';
import { writeFileAtomic, writeFilesAtomic } from '../util/atomic-file.js';
import { MAX_TTL_S } from '../util/duration.js';
import { randomSecret, sha256Hex } from '../util/secret.js';
import { credentialKeyPaths } from './credential-keys.js';
import { assertDataDirSecure } from './data-dir-perms.js';
import { openIssuerStores, paths, readMeta } from './data-dir.js';
import { readPrivateKeyFile } from './key-file.js';
import { KEY_WATCH_MS } from './key-reload.js';
import { spkiSha256, withdrawnSigningKeys } from './withdrawn-keys.js';
import {
  formatRotatingKeys,
  keyId,
  MAX_BESIDE,
  MAX_WITHDRAWN,
  WITHDRAWN_MEMORY_MS,
  nextSequence,
  readRotatingState,
  rotateLockHolder,
  rotateLockPath,
  rotatingKeysPath,
  ROTATABLE_KEYS,
  spkiBase64,
  type RotatableKey,
  type RotatingKey,
} from './rotating-keys.js';
import type { AuditEvent, Stores, WithdrawnKeyRecord } from './store/types.js';

export const ROTATE_KEY_KINDS = [...ROTATABLE_KEYS, 'admin-token'] as const;
export type RotateKeyKind = (typeof ROTATE_KEY_KINDS)[number];

/** How soon a running issuer reads a step's files: two polls (a change must hold still for one). */
export const RELOAD_WITHIN_S = (2 * KEY_WATCH_MS) / 1000;
/** A credential's longest life (MAX_TTL_S) plus an hour for every issuer to publish a step: the default overlap, and the staging time advised. */
export const DEFAULT_OVERLAP_S = MAX_TTL_S + 3600;
/** Longest overlap: a retired key trusted for more than a week is a key nobody retired. */
export const MAX_OVERLAP_S = 7 * 86_400;

export type RotateStep = 'stage' | 'activate' | 'cancel';

export interface RotateKeyResult {
  key: RotateKeyKind;
  step: RotateStep;
  /** kid (jwt) or SSH fingerprint of the key taken out of service (activate); null for the admin token. */
  previous: string | null;
  /** The signing key after this step (activate), or the staged key (stage, cancel). */
  current: string | null;
  /** Until when the previous key stays published (activate); null when it is not. */
  trustedUntil: string | null;
  /** Activate: how long the key had been staged, in seconds; null when it was not. */
  stagedForS: number | null;
  /** What relying parties may notice, when the step was taken sooner than advised. */
  warning: string | null;
  /** Activate with --overlap 0: the staged and retired keys of this kind withdrawn with the compromised one. */
  dropped: string[];
  /** Files written (to copy to every other issuer on a shared store). */
  files: string[];
  /** Files removed (to remove there too). */
  removed: string[];
  /**
   * Running issuers pick a signing-key step up within this many seconds (./key-reload.ts; at once
   * on SIGHUP); null for the admin token, which every issuer refuses at once.
   */
  reloadWithinS: number | null;
  /** The data directory shares a PostgreSQL store: other issuers need the same files. */
  sharedStore: boolean;
}

export async function rotateKey(o: {
  dataDir: string;
  key: string;
  step?: RotateStep;
  overlapS?: number;
  store?: string;
  now?: number;
}): Promise<RotateKeyResult> {
  const now = o.now ?? Date.now();
  const step = o.step ?? 'activate';
  if (!(ROTATE_KEY_KINDS as readonly string[]).includes(o.key)) {
    // The output types are ssh_user/ssh_host; the keys are ssh-user/ssh-host.
    const near = ROTATE_KEY_KINDS.find((k) => k === o.key.replace(/_/g, '-'));
    throw new SigilError(
      'bad_request',
      `--key must be one of ${ROTATE_KEY_KINDS.join(', ')} (got "${o.key}"${near ? `; did you mean ${near}?` : ''})`,
    );
  }
  const kind = o.key as RotateKeyKind;
  if (kind === 'admin-token' && (o.overlapS !== undefined || step !== 'activate'))
    throw new SigilError(
      'bad_request',
      '--overlap, --stage and --cancel apply to signing keys; an admin token is replaced at once and the old one refused',
    );
  if (step !== 'activate' && o.overlapS !== undefined)
    throw new SigilError('bad_request', '--overlap applies when a key is activated, not with --stage or --cancel');
  const overlapS = o.overlapS ?? DEFAULT_OVERLAP_S;
  if (!Number.isSafeInteger(overlapS) || overlapS < 0 || overlapS > MAX_OVERLAP_S)
    throw new SigilError('bad_request', `--overlap must be between 0 and ${MAX_OVERLAP_S / 86_400}d`);
  const meta = readMeta(o.dataDir);
  assertDataDirSecure(o.dataDir);
  const sharedStore = meta.store === 'postgres';
  const stores = openIssuerStores(o.dataDir, o.store !== undefined ? { store: o.store } : {});
  try {
    if (kind === 'admin-token') return { ...(await rotateAdminToken(stores, o.dataDir, now)), sharedStore };
    const r = await rotateSigningKey(stores, o.dataDir, kind, step, overlapS, now);
    return { ...r, sharedStore };
  } finally {
    await stores.close();
  }
}

async function rotateAdminToken(
  stores: Stores,
  dataDir: string,
  now: number,
): Promise<Omit<RotateKeyResult, 'sharedStore'>> {
  const token = randomSecret(32);
  await stores.withWriteTx(async (tx) => {
    await tx.admin.setAdminTokenHash(sha256Hex(token));
    await tx.audit.append(rotationEvent('key_rotated', { key: 'admin-token' }), now);
  });
  const file = paths(dataDir).adminToken;
  try {
    writeFileAtomic(file, token + '\n', { mode: 0o600 });
  } catch (e) {
    throw new SigilError(
      'internal',
      `the store now expects a new admin token but ${file} could not be written (${(e as Error).message}); fix that and run rotate-key --key admin-token again`,
      { cause: e },
    );
  }
  return {
    key: 'admin-token',
    step: 'activate',
    previous: null,
    current: null,
    trustedUntil: null,
    stagedForS: null,
    warning: null,
    dropped: [],
    files: [file],
    removed: [],
    reloadWithinS: null,
  };
}

async function rotateSigningKey(
  stores: Stores,
  dataDir: string,
  kind: RotatableKey,
  step: RotateStep,
  overlapS: number,
  now: number,
): Promise<Omit<RotateKeyResult, 'sharedStore'>> {
  const keyFile =
    credentialKeyPaths(dataDir)[kind === 'jwt' ? 'jwtSigning' : kind === 'ssh-user' ? 'sshUserCa' : 'sshHostCa'];
  const nextFile = `${keyFile}.next`;
  const listFile = rotatingKeysPath(dataDir);
  const caDir = dirname(keyFile);
  return withRotationLock(caDir, async () => {
    const signing = readPrivateKeyFile(keyFile);
    const state = readRotatingState(dataDir);
    const sequence = nextSequence(state.sequence, now);
    const list = (keys: readonly RotatingKey[]) => ({
      name: basename(listFile),
      data: formatRotatingKeys(keys, sequence),
      mode: 0o644,
    });
    // Expired retired keys are dropped at every step; the rest is carried over as it is.
    const live = state.keys.filter((k) => k.trustedUntil > now);
    const staged = live.find((k) => k.kind === kind && k.state === 'next');
    const others = live.filter((k) => k !== staged);
    const base = { key: kind, step, trustedUntil: null, stagedForS: null, warning: null, dropped: [] as string[] };
    // A signing key a compromise rotation withdrew (an old key file put back): only another
    // compromise rotation may replace it — a planned one would publish the stolen key as retired.
    const signingSpki = spkiBase64(signing);
    const withdrawnHit = live.find(
      (k) => k.kind === kind && k.state === 'withdrawn' && spkiBase64(k.publicKey) === signingSpki,
    );
    // The store remembers withdrawals the list may not (a ca/ restored from before the rotation).
    const compromiseStep = step === 'activate' && overlapS === 0;
    let rememberedRows: WithdrawnKeyRecord[] = [];
    try {
      rememberedRows = await stores.admin.withdrawnKeys();
    } catch (e) {
      // A row a database writer broke must not stop the way out of a compromise.
      if (!compromiseStep) throw e;
    }
    const remembered = withdrawnSigningKeys({ [kind]: signing } as Record<RotatableKey, KeyObject>, rememberedRows)[0];
    const withdrawnAt = withdrawnHit?.since ?? remembered?.at;
    if (withdrawnAt !== undefined && !(step === 'activate' && overlapS === 0))
      throw new SigilError(
        'bad_request',
        `the ${kind} signing key is one a compromise rotation withdrew on ${new Date(withdrawnAt).toISOString()} (put back from an older copy?): replace it with a fresh key and publish nothing of it: sigil server rotate-key --data-dir ${dataDir} --key ${kind} --overlap 0`,
      );

    if (step === 'stage') {
      if (staged)
        throw new SigilError(
          'bad_request',
          `a next ${kind} key is already staged (${keyId(staged.publicKey, kind)}, since ${new Date(staged.since).toISOString()}): activate it (rotate-key --key ${kind}) or drop it (--cancel) first`,
        );
      checkRoom(others, kind, 1);
      const fresh = newKeyLike(signing, kind);
      const entry: RotatingKey = {
        kind,
        state: 'next',
        publicKey: createPublicKey(fresh),
        since: now,
        trustedUntil: Infinity,
      };
      // The private key lands before the list that publishes it: a published next key always has one.
      writeFilesAtomic(caDir, [
        { name: basename(nextFile), data: pkcs8(fresh), mode: 0o600 },
        list([...others, entry]),
      ]);
      const current = keyId(fresh, kind);
      await audited(
        stores,
        keyFile,
        rotationEvent('key_staged', { key: kind, staged: current, signing: keyId(signing, kind) }),
        now,
      );
      return {
        ...base,
        previous: null,
        current,
        files: [listFile, nextFile],
        removed: [],
        reloadWithinS: RELOAD_WITHIN_S,
      };
    }

    if (step === 'cancel') {
      if (!staged) throw new SigilError('not_found', `no next ${kind} key is staged`);
      writeFilesAtomic(caDir, [list(others)]);
      fs.rmSync(nextFile, { force: true });
      const current = keyId(staged.publicKey, kind);
      await audited(stores, keyFile, rotationEvent('key_stage_cancelled', { key: kind, staged: current }), now);
      return {
        ...base,
        previous: null,
        current,
        files: [listFile],
        removed: [nextFile],
        reloadWithinS: RELOAD_WITHIN_S,
      };
    }

    const previous = keyId(signing, kind);
    const compromise = overlapS === 0;
    const hadNext = fs.existsSync(nextFile);
    if (staged && !compromise && spkiBase64(signing) === spkiBase64(staged.publicKey)) {
      // An activation that stopped after the staged key became the signing key: finish it (the
      // retired entry it wrote first is kept), rather than start another rotation.
      writeFilesAtomic(caDir, [list(others)]);
      fs.rmSync(nextFile, { force: true });
      await audited(stores, keyFile, rotationEvent('key_rotated', { key: kind, finished: previous }), now);
      return {
        ...base,
        previous,
        current: previous,
        files: [listFile, keyFile],
        removed: [nextFile],
        reloadWithinS: RELOAD_WITHIN_S,
      };
    }

    const dropped: string[] = [];
    let fresh: KeyObject;
    let kept: RotatingKey[];
    if (compromise) {
      // Whoever took ca/ (or a backup of it) took the staged key with it, and a backup older than
      // the last activation holds the retired key's private half: the new key is made here and
      // published alone. The staged file goes before anything else is written: nothing may ever
      // activate it. Every key of this kind is remembered as withdrawn, in the store and in the list,
      // so an issuer still signing with one (a data directory that missed this step) halts it or
      // refuses to start (withdrawn-keys.ts, rotating-keys.ts assertSigningKeysCurrent).
      fresh = newKeyLike(signing, kind);
      const mine = live.filter((k) => k.kind === kind && k.state !== 'withdrawn');
      dropped.push(`signing ${previous}`);
      for (const k of mine) dropped.push(`${k.state} ${keyId(k.publicKey, kind)}`);
      const withdrawn: RotatingKey[] = [createPublicKey(signing), ...mine.map((k) => k.publicKey)].map((publicKey) => ({
        kind,
        state: 'withdrawn',
        publicKey,
        since: now,
        trustedUntil: now + WITHDRAWN_MEMORY_MS,
      }));
      kept = [...live.filter((k) => k.kind !== kind || k.state === 'withdrawn'), ...withdrawn];
      // Bounded: the oldest withdrawn keys are forgotten first.
      const forget = new Set(
        kept
          .filter((k) => k.state === 'withdrawn')
          .sort((a, b) => b.since - a.since)
          .slice(MAX_WITHDRAWN),
      );
      kept = kept.filter((k) => !forget.has(k));
      // Into the store first, before any file: every issuer of the store halts these keys at its
      // next look (key-reload.ts), and no restored ca/ brings them back into service. A failure
      // here changes nothing on disk.
      try {
        await stores.withWriteTx(async (tx) => {
          for (const w of withdrawn)
            await tx.admin.rememberWithdrawnKey({ kind, spkiSha256: spkiSha256(w.publicKey), at: now });
        });
      } catch (e) {
        throw new SigilError(
          'internal',
          `the store could not record the withdrawn ${kind} keys (${(e as Error).message}); nothing was changed on disk: run the command again`,
          { cause: e },
        );
      }
      fs.rmSync(nextFile, { force: true });
    } else {
      if (staged) {
        fresh = readPrivateKeyFile(nextFile);
        if (spkiBase64(fresh) !== spkiBase64(staged.publicKey))
          throw new SigilError(
            'config_invalid',
            `${nextFile} is not the key ${listFile} publishes as the next ${kind} key; nothing was changed (stage again: --cancel, then --stage)`,
          );
      } else fresh = newKeyLike(signing, kind);
      // A rerun after a stop between the first two writes finds the old key already retired: once is enough.
      const oldSpki = spkiBase64(signing);
      kept = others.filter((k) => !(k.kind === kind && k.state === 'retired' && spkiBase64(k.publicKey) === oldSpki));
      checkRoom(kept, kind, 1);
    }
    const current = keyId(fresh, kind);
    const stagedForS = staged && !compromise ? Math.max(0, Math.floor((now - staged.since) / 1000)) : null;
    const retired: RotatingKey[] = compromise
      ? []
      : [
          {
            kind,
            state: 'retired',
            publicKey: createPublicKey(signing),
            since: now,
            trustedUntil: now + overlapS * 1000,
          },
        ];
    if (staged && !compromise) {
      // Order for a stop at any point: the list keeps the staged entry until the key is in place,
      // so a rerun finds the staged key (and finishes above once it signs); the old key is
      // published as retired before the new one replaces it.
      writeFilesAtomic(caDir, [list([...kept, ...retired, staged])]);
      writeFilesAtomic(caDir, [{ name: basename(keyFile), data: pkcs8(fresh), mode: 0o600 }]);
      fs.rmSync(nextFile, { force: true });
      writeFilesAtomic(caDir, [list([...kept, ...retired])]);
    } else {
      // One directory, one call: the list lands before the key, so a stop in between leaves the
      // old key signing (and, unless compromised, listed as retired), never a lost key.
      writeFilesAtomic(caDir, [
        list([...kept, ...retired]),
        { name: basename(keyFile), data: pkcs8(fresh), mode: 0o600 },
      ]);
    }
    const trustedUntil = compromise ? null : new Date(now + overlapS * 1000).toISOString();
    await audited(
      stores,
      keyFile,
      rotationEvent('key_rotated', {
        key: kind,
        previous,
        current,
        staged_for_s: stagedForS,
        overlap_s: overlapS,
        trusted_until: trustedUntil,
        ...(dropped.length > 0 ? { withdrawn: dropped } : {}),
      }),
      now,
    );
    return {
      ...base,
      previous,
      current,
      trustedUntil,
      stagedForS,
      warning: activationWarning(kind, stagedForS, overlapS),
      dropped,
      files: [listFile, keyFile],
      removed: hadNext ? [nextFile] : [],
      reloadWithinS: RELOAD_WITHIN_S,
    };
  });
}

function activationWarning(kind: RotatableKey, stagedForS: number | null, overlapS: number): string | null {
  const who =
    kind === 'jwt'
      ? 'JWT verifiers refetch the JWKS within 5 minutes (on an unknown kid at once), agents their bundle at their next fetch, consumers configured by hand when you re-export'
      : "agents' SSH trust files follow at their daemon's trust check (trust_check_every, default 5 minutes; a cron'd `agent run --once`: its first pass after that) or next identity renewal, consumers configured by hand when you re-export";
  const out: string[] = [];
  if (overlapS === 0)
    out.push(
      `expected after a compromise: until relying parties refresh their trust they refuse what the new key signs (${who})`,
    );
  else if (stagedForS === null)
    out.push(
      `the new key was not staged: until relying parties refresh their trust they refuse what it signs (${who}); stage first next time (--stage, then activate ${DEFAULT_OVERLAP_S / 3600}h later)`,
    );
  else if (stagedForS < DEFAULT_OVERLAP_S)
    out.push(
      `the key was staged ${formatHours(stagedForS)} ago (${DEFAULT_OVERLAP_S / 3600}h advised): relying parties that have not refreshed since it was published refuse what it signs until they do (${who})`,
    );
  if (overlapS > 0 && overlapS < MAX_TTL_S)
    out.push(
      `--overlap ${formatHours(overlapS)} is shorter than a credential's longest life (${MAX_TTL_S / 3600}h): credentials the old key signed recently stop verifying before they expire`,
    );
  return out.length > 0 ? out.join('; ') : null;
}

/** Refuse a step that would publish more than MAX_BESIDE keys beside the signing one (agents take a bounded list). */
function checkRoom(keys: readonly RotatingKey[], kind: RotatableKey, adding: number): void {
  const beside = keys.filter((k) => k.kind === kind && k.state !== 'withdrawn');
  if (beside.length + adding <= MAX_BESIDE) return;
  const until = Math.min(...beside.filter((k) => k.state === 'retired').map((k) => k.trustedUntil));
  throw new SigilError(
    'bad_request',
    `${beside.length} ${kind} keys are already published beside the signing one (at most ${MAX_BESIDE}): wait until the first retired one drops out (${Number.isFinite(until) ? new Date(until).toISOString() : 'never: cancel the staged key'}), or withdraw them all with --overlap 0`,
  );
}

/**
 * One rotate-key at a time per data directory: each step reads the list, changes it and writes it
 * back, so two at once would lose one's change (a retired key no longer published: an outage).
 * An exclusive lock file in ca/ holding the pid; one left by a process that is gone is taken over.
 */
export async function withRotationLock<T>(caDir: string, fn: () => Promise<T>): Promise<T> {
  const lock = rotateLockPath(dirname(caDir));
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = fs.openSync(
        lock,
        fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW,
        0o600,
      );
      try {
        fs.writeSync(fd, `${process.pid}\n`);
      } finally {
        fs.closeSync(fd);
      }
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw lockError(lock, e);
      const pid = rotateLockHolder(dirname(caDir));
      if (pid !== undefined)
        throw new SigilError(
          'conflict',
          `another sigil server rotate-key or rotate-intermediate (pid ${pid}) is working on this data directory; wait for it (lock: ${lock})`,
        );
      fs.rmSync(lock, { force: true }); // left by a process that is gone
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

function lockError(lock: string, e: unknown): SigilError {
  if ((e as NodeJS.ErrnoException).code === 'EEXIST')
    return new SigilError(
      'conflict',
      `another sigil server rotate-key or rotate-intermediate is working on this data directory (lock: ${lock})`,
    );
  return new SigilError('config_invalid', `cannot create the lock ${lock}: ${(e as Error).message}`, { cause: e });
}

function rotationEvent(action: string, details: Record<string, unknown>): AuditEvent {
  return { action, outcome: 'ok', actor: 'admin', remote: 'local', details };
}

/** The files are written: an audit failure is reported as such, not as a rotation that did not happen. */
async function audited(stores: Stores, keyFile: string, ev: AuditEvent, now: number): Promise<void> {
  try {
    await stores.audit.append(ev, now);
  } catch (e) {
    throw new SigilError(
      'internal',
      `${keyFile}: ${ev.action} was written to disk but its audit row could not be: ${(e as Error).message}`,
      { cause: e },
    );
  }
}

const formatHours = (s: number): string => (s < 3600 ? `${Math.floor(s / 60)}m` : `${(s / 3600).toFixed(1)}h`);

/** The same algorithm as the key it replaces: an SSH CA keeps its type (its trust lines name it). */
function newKeyLike(old: KeyObject, kind: RotatableKey): KeyObject {
  if (kind !== 'jwt' && old.asymmetricKeyType === 'ed25519') return generateKeyPairSync('ed25519').privateKey;
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}

const pkcs8 = (k: KeyObject): string => k.export({ type: 'pkcs8', format: 'pem' }) as string;
