/**
 * Keys in the middle of a rotation (`sigil server rotate-key`, ./rotate-key.ts), published beside
 * the signing key: `ca/rotating-keys.json`.
 *
 *   next     staged by `rotate-key --stage`: published now, signs from the activation on. Relying
 *            parties that refresh their trust (JWKS caches, the agent's SSH trust files, renewed
 *            within a credential's ≤ 24 h life) already trust it when it starts signing — the
 *            order SPIRE follows for its own keys (prepared, then active).
 *   retired  taken out of service by an activation: signs nothing, published until
 *            `trusted_until` so a credential it signed just before stays verifiable for the rest
 *            of its life, then drops out by itself (checked against the clock at every use).
 *            A rotation because of a compromise passes an overlap of 0 and lists nothing.
 *
 *   withdrawn  taken out by a compromise rotation (`--overlap 0`): never published, but remembered
 *            for WITHDRAWN_MEMORY_MS so that an issuer still signing with it — a data directory
 *            that missed the rotation — refuses to start instead of signing with a stolen key.
 *
 *   { "version": 1, "sequence": <seconds, grows at every step>,
 *     "keys": [ { "kind": "jwt" | "ssh-user" | "ssh-host", "state": "next" | "retired" | "withdrawn",
 *                 "public_key": "<base64 DER SubjectPublicKeyInfo>", "since": "<ISO 8601>",
 *                 "trusted_until": "<ISO 8601, retired only>",
 *                 "remember_until": "<ISO 8601, withdrawn only>" } ] }
 *
 * `sequence` feeds the SPIFFE bundle's `spiffe_sequence`, which must never go back: a cancelled
 * stage or a pruned entry changes the published keys as much as a new one does.
 *
 * Only public keys: a staged key's private half is its own 0600 file (`<key file>.next`).
 * Public, but trust-bearing: a key planted here is published as the issuer's own. So it is read
 * the way key files are (key-file.ts): O_NOFOLLOW, and on the open descriptor a regular file,
 * writable by nobody but its owner, owned by root or us (`data_dir_insecure` otherwise — every
 * reader, not only `server start`, e.g. `ca export`, whose output operators paste into trust
 * files); and a file that does not parse stops the start (config_invalid) rather than being
 * half-believed.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { SigilError } from '../errors.js';
import { sshFingerprint, sshPublicKeyFromKeyObject } from '../ssh/public-key.js';
import { publicJwk } from './credentials/jwt-signer.js';
import { assertOwnedByUs } from './key-file.js';

export const ROTATABLE_KEYS = ['jwt', 'ssh-user', 'ssh-host'] as const;
export type RotatableKey = (typeof ROTATABLE_KEYS)[number];

export interface RotatingKey {
  kind: RotatableKey;
  state: 'next' | 'retired' | 'withdrawn';
  publicKey: KeyObject;
  /** When it was staged (next) or retired. */
  since: number;
  /** Retired keys: published until then. Withdrawn keys: remembered (never published) until then. Next keys: Infinity. */
  trustedUntil: number;
}

export const rotatingKeysPath = (dir: string): string => join(dir, 'ca', 'rotating-keys.json');

const isoTime = z.string().refine((s) => Number.isFinite(Date.parse(s)), 'an ISO 8601 time');
const entrySchema = z
  .object({
    kind: z.enum(ROTATABLE_KEYS),
    state: z.enum(['next', 'retired', 'withdrawn']),
    public_key: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/),
    since: isoTime,
    trusted_until: isoTime.optional(),
    remember_until: isoTime.optional(),
  })
  .strict()
  .refine((e) => (e.state === 'retired') === (e.trusted_until !== undefined), 'trusted_until is for retired keys')
  .refine(
    (e) => (e.state === 'withdrawn') === (e.remember_until !== undefined),
    'remember_until is for withdrawn keys',
  );
/** Keys published beside one signing key, at most (the agent takes ≤ 16 other CA lines per answer). */
export const MAX_BESIDE = 8;
/** Withdrawn keys remembered, at most (the oldest are forgotten first), and for how long. */
export const MAX_WITHDRAWN = 24;
export const WITHDRAWN_MEMORY_MS = 30 * 86_400_000;

const fileSchema = z
  .object({
    version: z.literal(1),
    sequence: z.number().int().nonnegative().optional(),
    keys: z.array(entrySchema).max(ROTATABLE_KEYS.length * (MAX_BESIDE + 1) + MAX_WITHDRAWN),
  })
  .strict();

export interface RotatingState {
  keys: RotatingKey[];
  /** Seconds; 0 for a directory that never rotated. */
  sequence: number;
}

/** The rotating keys of data directory `dir`; none when the file does not exist. */
export function readRotatingKeys(dir: string): RotatingKey[] {
  return readRotatingState(dir).keys;
}

/** The keys and the sequence of `dir`'s list. */
export function readRotatingState(dir: string): RotatingState {
  const file = rotatingKeysPath(dir);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { keys: [], sequence: 0 };
    if (code === 'ELOOP')
      throw new SigilError('unsafe_path', `${file} is a symbolic link; refusing to publish keys read through it`);
    throw new SigilError('config_invalid', `cannot open ${file}: ${code ?? (e as Error).message}`, { cause: e });
  }
  let text: string;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new SigilError('unsafe_path', `${file} is not a regular file`);
    if ((st.mode & 0o022) !== 0)
      throw new SigilError(
        'data_dir_insecure',
        `${file} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}): whoever writes it chooses the keys published as this issuer's; check it was not changed, then run: chmod 644 ${file}`,
      );
    assertOwnedByUs(file, st);
    text = fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
  let parsed: z.infer<typeof fileSchema>;
  try {
    parsed = fileSchema.parse(JSON.parse(text));
  } catch (e) {
    const issue = e instanceof z.ZodError ? e.issues[0] : undefined;
    const where = issue ? ` (${issue.path.join('.') || 'top level'}: ${issue.message})` : ' (not JSON)';
    throw new SigilError(
      'config_invalid',
      `${file} is not a rotating-key list as sigil server rotate-key writes it${where}; restore it from the backup, or remove it to publish no staged or retired key`,
      { cause: e },
    );
  }
  const keys = parsed.keys.map((k, i): RotatingKey => {
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey({ key: Buffer.from(k.public_key, 'base64'), format: 'der', type: 'spki' });
    } catch (e) {
      throw new SigilError('config_invalid', `${file}: keys[${i}].public_key is not a public key`, { cause: e });
    }
    if (!fitsKind(publicKey, k.kind))
      throw new SigilError(
        'config_invalid',
        `${file}: keys[${i}] is a ${describeKey(publicKey)} key, which a ${k.kind} key cannot be (${k.kind === 'jwt' ? 'ECDSA P-256' : 'Ed25519 or ECDSA P-256'})`,
      );
    return {
      kind: k.kind,
      state: k.state,
      publicKey,
      since: Date.parse(k.since),
      trustedUntil:
        k.trusted_until !== undefined
          ? Date.parse(k.trusted_until)
          : k.remember_until !== undefined
            ? Date.parse(k.remember_until)
            : Infinity,
    };
  });
  for (const kind of ROTATABLE_KEYS)
    if (keys.filter((k) => k.kind === kind && k.state === 'next').length > 1)
      throw new SigilError('config_invalid', `${file} stages two next ${kind} keys; one rotation at a time`);
  return { keys, sequence: parsed.sequence ?? 0 };
}

/**
 * `rotating` and `rotatingSequence` of the credential authorities (credentials/authorities.ts),
 * after checking that none of `signing` is a key the list has taken out of service.
 */
export function rotatingOf(
  dir: string,
  signing: { jwtSigning: KeyObject; sshUserCa: KeyObject; sshHostCa: KeyObject },
  now = Date.now(),
): { rotating: RotatingKey[]; rotatingSequence: number } {
  const st = readRotatingState(dir);
  assertSigningKeysCurrent(
    dir,
    { jwt: signing.jwtSigning, 'ssh-user': signing.sshUserCa, 'ssh-host': signing.sshHostCa },
    st.keys,
    now,
  );
  return { rotating: st.keys, rotatingSequence: st.sequence };
}

/** The sequence of a list written at `now` after one with `previous`: never less than before, never less than now. */
export const nextSequence = (previous: number, now: number): number => Math.max(previous + 1, Math.floor(now / 1000));

/** The file's text for `keys`. */
export function formatRotatingKeys(keys: readonly RotatingKey[], sequence: number): string {
  const out = {
    version: 1,
    sequence,
    keys: keys.map((k) => ({
      kind: k.kind,
      state: k.state,
      public_key: spkiBase64(k.publicKey),
      since: new Date(k.since).toISOString(),
      ...(k.state === 'retired' ? { trusted_until: new Date(k.trustedUntil).toISOString() } : {}),
      ...(k.state === 'withdrawn' ? { remember_until: new Date(k.trustedUntil).toISOString() } : {}),
    })),
  };
  return JSON.stringify(out, null, 2) + '\n';
}

/**
 * The keys of `kind` to publish at `now` besides the signing one: the staged next key first,
 * then retired keys still trusted, newest first. A key equal to `signing` (an activation that
 * stopped between its two writes) is not listed twice.
 */
export function publishedBeside(
  keys: readonly RotatingKey[],
  kind: RotatableKey,
  now: number,
  signing: KeyObject,
): RotatingKey[] {
  // The common case (no rotation ever, or none of this kind) costs no key export: this runs for
  // every SSH credential answer and every JWKS served.
  if (!keys.some((k) => k.kind === kind)) return [];
  const active = spkiBase64(signing);
  const seen = new Set([active]);
  const out: RotatingKey[] = [];
  const ordered = keys
    .filter((k) => k.kind === kind && k.state !== 'withdrawn' && k.trustedUntil > now)
    .sort((a, b) => (a.state === b.state ? b.since - a.since : a.state === 'next' ? -1 : 1));
  for (const k of ordered) {
    const id = spkiBase64(k.publicKey);
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(k);
  }
  return out;
}

/**
 * Refuse signing keys the list says are out of service: a key file equal to a retired or
 * withdrawn key is a data directory that missed a rotate-key step (several issuers each hold a
 * copy, runbook "Several issuers on PostgreSQL") or an activation stopped half-way. Signing on
 * would hand out credentials that stop verifying when the retired key drops out — or, withdrawn,
 * keep a stolen key in service.
 */
export function assertSigningKeysCurrent(
  dir: string,
  signing: Record<RotatableKey, KeyObject>,
  keys: readonly RotatingKey[],
  now: number,
): void {
  const [first] = signingKeysOutOfService(signing, keys, now);
  if (first) throw new SigilError('config_invalid', outOfServiceMessage(dir, first, keys));
}

/** A signing key the list has taken out of service, and the entry that says so. */
export interface OutOfService {
  kind: RotatableKey;
  entry: RotatingKey;
}

/** Each kind whose signing key the list names as retired or withdrawn (and still remembers) at `now`. */
export function signingKeysOutOfService(
  signing: Record<RotatableKey, KeyObject>,
  keys: readonly RotatingKey[],
  now: number,
): OutOfService[] {
  const out: OutOfService[] = [];
  for (const kind of ROTATABLE_KEYS) {
    if (!keys.some((k) => k.kind === kind)) continue;
    const mine = spkiBase64(signing[kind]);
    const entry = keys.find(
      (k) => k.kind === kind && k.state !== 'next' && k.trustedUntil > now && spkiBase64(k.publicKey) === mine,
    );
    if (entry) out.push({ kind, entry });
  }
  return out;
}

/** What to do about a signing key out of service, naming the step that took it out. */
export function outOfServiceMessage(dir: string, { kind, entry }: OutOfService, keys: readonly RotatingKey[]): string {
  // An activation stopped half-way leaves its list with the old key retired *and* the staged entry
  // (rotate-key.ts writes the list without it last); a peer given the finished list first has no
  // staged entry: telling it to run rotate-key would rotate again there (found walking the docs).
  const halfWay = keys.some((k) => k.kind === kind && k.state === 'next');
  return `the ${kind} signing key in ${join(dir, 'ca')} is the one ${rotatingKeysPath(dir)} lists as ${entry.state} since ${new Date(entry.since).toISOString()}: ${
    entry.state === 'withdrawn'
      ? `a compromise rotation took it out of service: copy the current key file from the issuer where the rotation ran (on a shared store: not copied here yet?); only if no issuer has it (one issuer, a key file put back from an older copy), make a fresh one: sigil server rotate-key --data-dir ${dir} --key ${kind} --overlap 0`
      : halfWay
        ? `an activation stopped half-way (run sigil server rotate-key --data-dir ${dir} --key ${kind} again to finish it, on the issuer where it ran), or this directory got that half-done list (copy the key file and the list again once it finished there)`
        : `this data directory missed a rotate-key step or got its list before its key file: copy the key file (list first, then key file) from the issuer where it ran, docs/runbook.md "Rotate a key"`
  }`;
}

/** How a key is named in logs, audit rows and output: its JWK thumbprint (jwt) or SSH fingerprint. */
export function keyId(k: KeyObject, kind: RotatableKey): string {
  return kind === 'jwt' ? `kid ${publicJwk(k).kid}` : sshFingerprint(sshPublicKeyFromKeyObject(k).blob);
}

/** Held by `sigil server rotate-key` while it changes the list and the key files (one at a time). */
export const rotateLockPath = (dir: string): string => join(dir, 'ca', '.rotate-key.lock');

/** A rotate-key step takes well under a second (its audit append at most a store timeout): a lock older than this is left over, whoever holds its pid now. */
export const ROTATE_LOCK_STALE_MS = 10 * 60_000;

/**
 * The pid in rotate-key's lock if that process is alive and the lock is recent; undefined with no
 * lock, or one left by a process that is gone (or whose pid was reused: older than ROTATE_LOCK_STALE_MS).
 */
export function rotateLockHolder(dir: string, now = Date.now()): number | undefined {
  let text: string;
  try {
    if (now - fs.statSync(rotateLockPath(dir)).mtimeMs > ROTATE_LOCK_STALE_MS) return undefined;
    text = fs.readFileSync(rotateLockPath(dir), 'utf8').slice(0, 32);
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(text, 10);
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

export const spkiBase64 = (k: KeyObject): string =>
  ((k.type === 'private' ? createPublicKey(k) : k).export({ format: 'der', type: 'spki' }) as Buffer).toString(
    'base64',
  );

const isP256 = (k: KeyObject): boolean =>
  k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1';
const fitsKind = (k: KeyObject, kind: RotatableKey): boolean =>
  isP256(k) || (kind !== 'jwt' && k.asymmetricKeyType === 'ed25519');
const describeKey = (k: KeyObject): string =>
  k.asymmetricKeyType === 'ec' ? `EC ${k.asymmetricKeyDetails?.namedCurve ?? '?'}` : String(k.asymmetricKeyType);
