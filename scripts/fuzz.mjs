#!/usr/bin/env node
/**
 * `npm run fuzz -- --minutes N [--runs R] [--files test/fuzz/der.fuzz.test.ts …]`
 *
 * Runs the fuzz tests (test/fuzz, issue #11) again and again for N minutes, each round with a
 * fresh random fast-check seed, a large run count and a per-property time budget sized so a
 * round fits the time left. Prints the seed of every failing round and the fast-check
 * counterexample lines, and how to replay them; exits non-zero when any round failed.
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const minutes = Number(opt('minutes', '1'));
const runs = Number(opt('runs', '1000000'));
const files = [];
for (let i = 0; i < args.length; i++)
  if (args[i] === '--files') while (args[i + 1] && !args[i + 1].startsWith('--')) files.push(args[++i]);
if (!Number.isFinite(minutes) || minutes <= 0) {
  console.error('usage: npm run fuzz -- --minutes N [--runs R] [--files FILE…]');
  process.exit(2);
}

const deadline = Date.now() + minutes * 60_000;
/**
 * How many property budgets one round costs in wall time: files run on two workers, the
 * properties of a file one after another (test/fuzz holds ~37 properties, der ~10 of them).
 */
const PROPERTY_WEIGHT = files.length ? Math.max(10, 5 * files.length) : 20;
const ROUND_OVERHEAD_MS = 20_000;

function round(seed, budgetMs) {
  return new Promise((resolve) => {
    const child = spawn('npx', ['vitest', 'run', ...(files.length ? files : ['test/fuzz']), '--reporter=dot'], {
      cwd: root,
      env: {
        ...process.env,
        SIGIL_FUZZ_SEED: String(seed),
        SIGIL_FUZZ_RUNS: String(runs),
        SIGIL_FUZZ_BUDGET_MS: String(budgetMs),
        NO_COLOR: '1',
        FORCE_COLOR: '0',
      },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    // A round may not outlive the deadline by much: stop it (its own process group only).
    const hard = setTimeout(
      () => {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {}
      },
      Math.max(5_000, deadline - Date.now() + 30_000),
    );
    child.on('close', (code, signal) => {
      clearTimeout(hard);
      // eslint-disable-next-line no-control-regex
      resolve({ code, signal, out: out.replace(/\x1b\[[0-9;]*m/g, '') });
    });
  });
}

const failures = [];
let rounds = 0;
console.log(`fuzz: ${minutes} min, runs/property ${runs}, ${files.length ? files.join(' ') : 'test/fuzz'}`);
while (Date.now() < deadline - 10_000 || rounds === 0) {
  const left = deadline - Date.now();
  const budgetMs = Math.round(Math.min(60_000, Math.max(1_000, (left - ROUND_OVERHEAD_MS) / PROPERTY_WEIGHT)));
  const seed = randomInt(-(2 ** 31), 2 ** 31 - 1);
  const started = Date.now();
  const r = await round(seed, budgetMs);
  rounds++;
  const tests = /Tests\s+(.*)/.exec(r.out)?.[1]?.trim() ?? '(no summary)';
  const secs = ((Date.now() - started) / 1000).toFixed(0);
  if (r.code === 0) {
    console.log(`round ${rounds}: seed ${seed}, budget ${budgetMs} ms/property, ${secs} s: ${tests}`);
    continue;
  }
  const failed = [...r.out.matchAll(/FAIL\s+(\S+\.test\.ts)\s*>\s*(.*)/g)].map((m) => `${m[1]} > ${m[2].trim()}`);
  const counterexamples = [...r.out.matchAll(/\{ seed: (-?\d+), path: "([^"]*)"[^}]*\}/g)].map(
    (m) => `seed ${m[1]} path "${m[2]}"`,
  );
  const why = [...r.out.matchAll(/^\s*(FuzzFailure|Caused by: \w+|\w*Error): ([^\n]{0,300})/gm)].map(
    (m) => `${m[1]}: ${m[2]}`,
  );
  failures.push({ seed, failed, counterexamples, why });
  console.log(`round ${rounds}: seed ${seed}, ${secs} s: FAILED${r.signal ? ` (stopped: ${r.signal})` : ''}: ${tests}`);
  for (const f of failed) console.log(`  failed: ${f}`);
  for (const c of counterexamples) console.log(`  counterexample: ${c}`);
  for (const w of [...new Set(why)].slice(0, 6)) console.log(`  ${w}`);
  if (failed.length === 0 && !r.signal) console.log(r.out.split('\n').slice(-40).join('\n'));
}

console.log(`fuzz: ${rounds} round(s), ${failures.length} failed`);
for (const f of failures) {
  console.log(
    `  seed ${f.seed}: replay with SIGIL_FUZZ_SEED=${f.seed} SIGIL_FUZZ_RUNS=${runs} npx vitest run ${files.length ? files.join(' ') : 'test/fuzz'}${f.failed[0] ? ` -t "${f.failed[0].split(' > ').pop()}"` : ''}`,
  );
}
process.exit(failures.length > 0 ? 1 : 0);
