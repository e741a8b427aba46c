#!/usr/bin/env node
// Regenerate the error-code table in docs/errors.md from the built code table (dist/errors.js),
// between the BEGIN/END marker comments. Run `npm run build` first.
//
//   node scripts/gen-errors-doc.mjs           rewrite docs/errors.md
//   node scripts/gen-errors-doc.mjs --check   exit 1 if docs/errors.md is out of date (CI)
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist', 'errors.js');
const doc = join(root, 'docs', 'errors.md');
const BEGIN = '<!-- BEGIN GENERATED: error table (node scripts/gen-errors-doc.mjs) -->';
const END = '<!-- END GENERATED: error table -->';

let mod, out;
try {
  mod = await import(dist);
  out = await import(join(root, 'dist', 'cli', 'output.js'));
} catch {
  console.error(`gen-errors-doc: cannot load ${dist}; run: npm run build`);
  process.exit(2);
}
try {
  if (statSync(join(root, 'src', 'errors.ts')).mtimeMs > statSync(dist).mtimeMs) {
    console.error('gen-errors-doc: warning: src/errors.ts is newer than dist/errors.js; run: npm run build');
  }
} catch {
  // no src/ (installed from a package): nothing to compare
}

// Section headings are the `// --- area ---` comments tsc keeps in dist/errors.js.
const area = new Map();
let current = 'other';
for (const line of readFileSync(dist, 'utf8').split('\n')) {
  const h = /^\s*\/\/ --- (.+?) ---/.exec(line);
  if (h) current = h[1];
  // An entry opens `code: {` (formatted over several lines) or `code: { status: …` (on one).
  const k = /^\s*([a-z_]+): \{(\s*$| status:)/.exec(line);
  if (k && k[1] in mod.ERROR_TABLE) area.set(k[1], current);
}

// The CLI exit code, asked of the CLI's own reportError (it prints one line; swallow it).
function exitCode(code) {
  const write = process.stderr.write;
  process.stderr.write = () => true;
  try {
    return out.reportError(new mod.SigilError(code));
  } finally {
    process.stderr.write = write;
  }
}

const rows = [];
let last;
for (const [code, spec] of Object.entries(mod.ERROR_TABLE)) {
  const a = area.get(code) ?? 'other';
  if (a !== last) {
    rows.push(`| **${a}** | | | | |`);
    last = a;
  }
  rows.push(
    `| \`${code}\` | ${spec.status} | ${spec.retryable ? 'yes' : 'no'} | ${exitCode(code)} | ${spec.message.replace(/\|/g, '\\|')} |`,
  );
}
const table = [
  BEGIN,
  '',
  `${Object.keys(mod.ERROR_TABLE).length} codes, generated from \`src/errors.ts\`; do not edit by hand.`,
  '',
  '| code | HTTP | retryable | CLI exit | meaning (default message) |',
  '|---|---|---|---|---|',
  ...rows,
  '',
  END,
].join('\n');

const text = readFileSync(doc, 'utf8');
const i = text.indexOf(BEGIN);
const j = text.indexOf(END);
if (i < 0 || j < i) {
  console.error(`gen-errors-doc: ${doc} lacks the marker lines\n  ${BEGIN}\n  ${END}`);
  process.exit(2);
}
const next = text.slice(0, i) + table + text.slice(j + END.length);
if (process.argv.includes('--check')) {
  if (next !== text) {
    console.error(
      'gen-errors-doc: docs/errors.md is out of date; run: npm run build && node scripts/gen-errors-doc.mjs',
    );
    process.exit(1);
  }
  console.log('docs/errors.md is up to date');
} else if (next !== text) {
  writeFileSync(doc, next);
  console.log(`docs/errors.md: ${Object.keys(mod.ERROR_TABLE).length} codes written`);
} else {
  console.log('docs/errors.md already up to date');
}
