/**
 * Signed audit checkpoints (issue #11 item 6b). The issuer signs {seq, hash, at, count} of the
 * chain head with its issuing key and appends the record to a file outside issuer.db, opened
 * O_APPEND, one JSON object per line (default `<data-dir>/audit-checkpoints.jsonl`), and logs it
 * (so journald/syslog forwarding carries a copy off the machine). Whoever rewrites or truncates
 * the database cannot make an older checkpoint agree: `audit --verify --checkpoint F` compares
 * (./verify.ts). The record is self-contained and verifiable with the intermediate certificate.
 *
 * Line format: {"v":1,"kind":"periodic"|"shutdown"|"prune"|"manual","seq":N,"hash":"<hex>",
 * "at":<unix ms>,"count":<rows held from the anchor to seq>,"key_id":"<audit key id>"|null,
 * "signer":"sha256:<hex of the signing key's SPKI>","sig":"<base64url ECDSA/SHA-256 DER over the
 * canonical JSON of every other field>"}
 */
import { createHash, createPublicKey, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { canonicalJson } from '../store/sqlite/canonical-json.js';
import type { AuditStore } from '../store/types.js';

export const CHECKPOINT_FILE = 'audit-checkpoints.jsonl';

export type CheckpointKind = 'periodic' | 'shutdown' | 'prune' | 'manual';

export interface Checkpoint {
  v: 1;
  kind: CheckpointKind;
  seq: number;
  hash: string;
  at: number;
  count: number;
  key_id: string | null;
  signer: string;
  sig: string;
}

export interface CheckpointSigner {
  key: KeyObject;
  /** sha256:<hex> of the public key's SPKI DER. */
  id: string;
}

export function signerId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return `sha256:${createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex')}`;
}

/** Public keys that may have signed checkpoints, by signer id: the intermediate(s) given. */
export function checkpointVerifiers(certPems: string[]): Map<string, KeyObject> {
  const m = new Map<string, KeyObject>();
  for (const pem of certPems) {
    const key = new X509Certificate(pem).publicKey;
    m.set(signerId(key), key);
  }
  return m;
}

const signedBytes = (cp: Omit<Checkpoint, 'sig'> | Checkpoint): Buffer => {
  const { sig: _sig, ...body } = cp as Checkpoint;
  return Buffer.from(canonicalJson(body), 'utf8');
};

/** A signed checkpoint of the chain head; undefined while the log is empty. */
export async function checkpointHead(
  audit: AuditStore,
  signer: CheckpointSigner,
  kind: CheckpointKind,
  now: number,
): Promise<Checkpoint | undefined> {
  const [head, anchor, keyInfo] = await Promise.all([audit.head(), audit.anchor(), audit.keyInfo()]);
  if (!head) return undefined;
  return signCheckpoint(
    {
      v: 1,
      kind,
      seq: head.seq,
      hash: head.hash,
      at: now,
      count: head.seq - (anchor?.seq ?? 0),
      key_id: keyInfo?.id ?? null,
      signer: signer.id,
    },
    signer,
  );
}

export function signCheckpoint(body: Omit<Checkpoint, 'sig'>, signer: CheckpointSigner): Checkpoint {
  return { ...body, sig: sign('sha256', signedBytes(body), signer.key).toString('base64url') };
}

/** True when `cp` is well formed and signed by one of `keys` (by signer id). */
export function checkpointSignatureOk(cp: Checkpoint, keys: ReadonlyMap<string, KeyObject>): boolean {
  if (typeof cp !== 'object' || cp === null || typeof cp.signer !== 'string') return false;
  const key = keys.get(cp.signer);
  if (!key || typeof cp.sig !== 'string') return false;
  try {
    return verify('sha256', signedBytes(cp), key, Buffer.from(cp.sig, 'base64url'));
  } catch {
    return false;
  }
}

/**
 * Append one line and fsync. O_APPEND: every write lands at the end whatever else writes the
 * file, and the issuer never opens it for anything but appending. (Making the file itself
 * append-only against its owner is the operator's: `chattr +a`, or ship it away; runbook.)
 */
export function appendCheckpoint(path: string, cp: Checkpoint): void {
  const fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(cp) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export interface CheckpointLine {
  line: number;
  cp?: Checkpoint;
  error?: string;
}

/** Every line of a checkpoint file, parsed (blank lines skipped). */
export function readCheckpoints(path: string): CheckpointLine[] {
  const text = fs.readFileSync(path, 'utf8');
  const out: CheckpointLine[] = [];
  text.split('\n').forEach((raw, i) => {
    if (!raw.trim()) return;
    try {
      const cp = JSON.parse(raw) as Checkpoint;
      if (cp?.v !== 1 || !Number.isSafeInteger(cp.seq) || typeof cp.hash !== 'string' || typeof cp.signer !== 'string')
        throw new Error('not a v1 checkpoint');
      out.push({ line: i + 1, cp });
    } catch (e) {
      out.push({ line: i + 1, error: (e as Error).message.slice(0, 200) });
    }
  });
  return out;
}

/**
 * Writes checkpoints for the issuer: periodically (when the head moved), at shutdown and before
 * a prune. Holds no database state beyond the last seq it signed.
 */
export class CheckpointWriter {
  private lastSeq: number | undefined;
  constructor(
    readonly path: string,
    private readonly signer: CheckpointSigner,
    private readonly onWrite?: (cp: Checkpoint) => void,
  ) {}

  async write(audit: AuditStore, kind: CheckpointKind, now: number): Promise<Checkpoint | undefined> {
    const cp = await checkpointHead(audit, this.signer, kind, now);
    if (!cp || (kind === 'periodic' && cp.seq === this.lastSeq)) return undefined;
    appendCheckpoint(this.path, cp);
    this.lastSeq = cp.seq;
    this.onWrite?.(cp);
    return cp;
  }

  /** Sign and append a checkpoint at a given row (before pruning through it). */
  writeAt(row: { seq: number; hash: string }, count: number, keyId: string | null, now: number): Checkpoint {
    const cp = signCheckpoint(
      { v: 1, kind: 'prune', seq: row.seq, hash: row.hash, at: now, count, key_id: keyId, signer: this.signer.id },
      this.signer,
    );
    appendCheckpoint(this.path, cp);
    this.onWrite?.(cp);
    return cp;
  }
}
