#!/usr/bin/env node
// The `sigil` command. The TypeScript sources are compiled to dist/ by `npm run build`
// (scripts/setup.sh and `npm test` do it).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('error[not_built]: sigil is not built yet; run: npm run build\n');
  process.exit(2);
}
await import(main);
