#!/usr/bin/env node
/**
 * Writes the V8 code cache of the bundle's one-shot script (issue #19; src/cli/code-cache.ts
 * says what it is and when it is trusted):
 *
 *   node scripts/code-cache-train.mjs dist-bundle/agent-one-shot.cjs
 *
 * Run by scripts/bundle.mjs with the node binary the package ships (the cache is only accepted
 * by the same V8 version and flags; the one-shot commands run without flags). V8 caches the
 * functions compiled so far, so the script first does what a gateway's one-shot commands do —
 * `agent run --once` and `agent status` on a scratch config in a temporary directory — up to
 * where the network starts: the issuer is a closed port on 127.0.0.1, so the join fails
 * (exit 75) after the config, state, lock, key, CSR and HTTPS client code ran. Then it checks
 * in a fresh process that V8 accepts the cache it wrote. Nothing leaves the machine.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = resolve(import.meta.dirname, '..');
const codeCache = await import(pathToFileURL(join(ROOT, 'dist', 'cli', 'code-cache.js')).href);
const script = resolve(process.argv[2] ?? '');
if (process.argv[2] === '--check') {
  // A fresh process: does V8 take the cache written below?
  const file = resolve(process.argv[3]);
  process.stdout.write(`${codeCache.runCommonJsWithCache(file).cache}\n`);
  process.exit(0);
}

/** A port nothing listens on: taken from the OS, then closed. */
const closedPort = await new Promise((res) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => res(port));
  });
});

const scratch = mkdtempSync(join(tmpdir(), 'sigil-code-cache-'));
try {
  const cfg = join(scratch, 'agent.yaml');
  writeFileSync(
    cfg,
    `issuer: https://127.0.0.1:${closedPort}\nca_pin: sha256:${'0'.repeat(64)}\ndata_dir: ${join(scratch, 'data')}\n` +
      `join: { method: token, token: code-cache-training-${'x'.repeat(24)} }\n` +
      `outputs:\n  - { type: identity, path: ${join(scratch, 'identity')} }\n`,
  );
  const compiled = codeCache.runCommonJsWithCache(script, false);
  const { runFastAgentCommand } = compiled.exports;
  const stay = () => undefined; // a one-shot command would exit the process here
  for (const line of [
    ['agent', 'run', '--once', '--config', cfg],
    ['agent', 'status', '--config', cfg],
    ['agent', 'status', '--config', cfg, '--format', 'json'],
  ]) {
    if (!(await runFastAgentCommand(line, stay))) throw new Error(`not a one-shot line: ${line.join(' ')}`);
  }
  process.exitCode = 0; // the failed join and the not-joined status set 75 and 1: expected here
  const cacheFile = codeCache.cacheFileOf(script);
  writeFileSync(cacheFile, compiled.script.createCachedData());
  chmodSync(cacheFile, 0o644); // read by every user; written by the builder only (see code-cache.ts)
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

const check = spawnSync(process.execPath, [import.meta.filename, '--check', script], { encoding: 'utf8' });
if (check.status !== 0 || check.stdout.trim() !== 'used')
  throw new Error(`V8 does not take the cache it wrote: ${check.stdout}${check.stderr}`);
