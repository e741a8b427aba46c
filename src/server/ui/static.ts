/**
 * The fleet view's CSS and JS, shipped in the package (assets/ui/) and served from memory: no CDN,
 * no build step, works air-gapped. Read once when the view is built; each file's URL carries a
 * hash of its bytes, so it can be cached for long and a new release is fetched at once.
 *
 * The directory is found from this module (`new URL('../../../assets/ui/', import.meta.url)`:
 * src/ and dist/ are both three levels below the package root); scripts/bundle.mjs rewrites that
 * exact form and copies assets/ui/ into dist-bundle/.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const UI_ASSETS_DIR = fileURLToPath(new URL('../../../assets/ui/', import.meta.url));

const TYPES: Readonly<Record<string, string>> = {
  'ui.css': 'text/css; charset=utf-8',
  'ui.js': 'text/javascript; charset=utf-8',
};

export interface StaticAsset {
  body: Buffer;
  type: string;
  /** First 16 hex digits of the SHA-256 of the bytes. */
  version: string;
}

export class StaticAssets {
  readonly #files = new Map<string, StaticAsset>();

  constructor(dir: string = UI_ASSETS_DIR) {
    for (const [name, type] of Object.entries(TYPES)) {
      const body = readFileSync(`${dir}/${name}`);
      this.#files.set(name, { body, type, version: createHash('sha256').update(body).digest('hex').slice(0, 16) });
    }
  }

  get(name: string): StaticAsset | undefined {
    return this.#files.get(name);
  }

  /** `/ui/static/<name>?v=<hash>`. */
  url(name: string): string {
    const f = this.#files.get(name);
    return `/ui/static/${name}${f ? `?v=${f.version}` : ''}`;
  }

  /** Bytes of every asset (the page-weight budget). */
  get totalBytes(): number {
    let n = 0;
    for (const f of this.#files.values()) n += f.body.length;
    return n;
  }
}
