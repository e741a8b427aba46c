/**
 * The firmware profiles an issuer judges boots against, owned by the issuer (one object per
 * IssuerContext; two issuers in one process may use two directories).
 *
 * Where profiles come from: the directory given to the constructor (`sigil server start
 * --firmware-profiles DIR`), else the SIGIL_FIRMWARE_PROFILES_DIR environment variable, else
 * `firmware-profiles/` of the Sigil installation. The directory is re-read when a file in it
 * changes (name, size or mtime; looked at once a second at most), so a new profile needs no
 * restart.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SigilError } from '../../errors.js';
import { selectionKey } from '../quote.js';
import { selectionFor } from './boot.js';
import { loadFirmwareProfiles } from './load.js';
import type { FirmwareProfile } from './schema.js';

/** firmware-profiles/ of the installation: three levels up from src/attest/firmware (or dist/attest/firmware). */
const INSTALL_DIR = fileURLToPath(new URL('../../../firmware-profiles/', import.meta.url));

/** The directory is looked at (readdir + stat) at most this often. */
const RECHECK_MS = 1_000;

/** Distinct profile lists (one per join rule, in practice) whose resolution is kept per loaded directory. */
const MAX_RESOLVED = 1_000;

/**
 * A rule's profiles with what every attestation derives from them: the PCRs to quote and that
 * selection as comparable text (quote.ts selectionKey). Frozen: shared by every request.
 */
export interface ResolvedProfiles {
  readonly profiles: readonly FirmwareProfile[];
  /** Frozen (typed as selectionFor's result, which the wire code takes). */
  readonly selection: ReturnType<typeof selectionFor>;
  readonly selectionKey: string;
}

interface Loaded {
  dir: string;
  stamp: string;
  checkedAt: number;
  profiles: Map<string, FirmwareProfile>;
  /** resolved() per profile-name list, for exactly these profiles: dropped with them at a reload. */
  resolved: Map<string, ResolvedProfiles>;
}

function dirStamp(dir: string): string {
  try {
    return readdirSync(dir)
      .filter((n) => /\.ya?ml$/i.test(n))
      .sort()
      .map((n) => {
        const st = statSync(join(dir, n));
        return `${n}:${st.size}:${st.mtimeMs}`;
      })
      .join('|');
  } catch (e) {
    throw new SigilError(
      'firmware_profile_unknown',
      `cannot read the firmware profile directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

export class FirmwareProfiles {
  readonly #configured: string | undefined;
  readonly #now: () => number;
  #cache: Loaded | undefined;

  /** `dir` undefined: $SIGIL_FIRMWARE_PROFILES_DIR (read at each use, as before), else the install's. */
  constructor(dir?: string, opts: { now?: () => number } = {}) {
    this.#configured = dir === undefined ? undefined : resolve(dir);
    this.#now = opts.now ?? Date.now;
  }

  get dir(): string {
    return this.#configured ?? process.env.SIGIL_FIRMWARE_PROFILES_DIR ?? INSTALL_DIR;
  }

  /** The named profiles, in the rule's order; an unknown name or a broken directory is `firmware_profile_unknown`. */
  resolve(names: readonly string[], ruleName: string): FirmwareProfile[] {
    return this.#pick(this.#load().profiles, names, ruleName);
  }

  /**
   * {@link resolve} with the selection derived from the profiles, computed once per name list
   * and loaded directory (a renewal with a quote needs both; deriving them was ~20 µs of the
   * issuer's judgement, bench/tpm-renew.ts). The directory is looked at as often as by resolve,
   * and a reload (a profile file added, changed or removed) starts from nothing; an unknown name
   * is refused every time, never kept.
   */
  resolved(names: readonly string[], ruleName: string): ResolvedProfiles {
    const loaded = this.#load();
    const key = JSON.stringify(names);
    let r = loaded.resolved.get(key);
    if (r === undefined) {
      const profiles = Object.freeze(this.#pick(loaded.profiles, names, ruleName));
      const selection = selectionFor(profiles);
      // Frozen to the last array: a caller that tried to change a shared selection would throw.
      for (const b of selection) {
        Object.freeze(b.pcrs);
        Object.freeze(b);
      }
      Object.freeze(selection);
      const made: ResolvedProfiles = Object.freeze({ profiles, selection, selectionKey: selectionKey(selection) });
      if (loaded.resolved.size >= MAX_RESOLVED) loaded.resolved.clear();
      loaded.resolved.set(key, made);
      return made;
    }
    return r;
  }

  #pick(profiles: Map<string, FirmwareProfile>, names: readonly string[], ruleName: string): FirmwareProfile[] {
    return names.map((n) => {
      const p = profiles.get(n);
      if (!p)
        throw new SigilError(
          'firmware_profile_unknown',
          `join_rule ${ruleName} names firmware profile "${n}", which is not in ${this.dir} (known: ${[...profiles.keys()].join(', ') || 'none'})`,
        );
      return p;
    });
  }

  #load(): Loaded {
    const dir = this.dir;
    const now = this.#now();
    let cache = this.#cache;
    if (cache?.dir !== dir || now - cache.checkedAt >= RECHECK_MS) {
      const stamp = dirStamp(dir);
      if (cache?.dir !== dir || cache.stamp !== stamp) {
        try {
          cache = { dir, stamp, checkedAt: now, profiles: loadFirmwareProfiles(dir), resolved: new Map() };
        } catch (e) {
          this.#cache = undefined;
          throw new SigilError(
            'firmware_profile_unknown',
            `the firmware profiles in ${dir} do not load: ${(e as Error).message}`,
          );
        }
      }
      cache.checkedAt = now;
      this.#cache = cache;
    }
    return cache;
  }
}
