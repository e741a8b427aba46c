#!/usr/bin/env node
// Processes a test run left behind (scripts/test.sh runs this after vitest): every process that
// still carries the run's SIGIL_TEST_RUN value in its environment, other than this script and the
// shells above it. A daemon a test started and never stopped keeps its port, its temp dir and, if
// it inherited them, the run's output pipes, which a CI runner waits on. Each is named, then killed.
// Exit status 0 either way: a leak is reported, the tests' verdict is theirs.
import { readdirSync, readFileSync } from 'node:fs';

const id = process.env.SIGIL_TEST_RUN;
if (!id) {
  console.error('test-leftovers: SIGIL_TEST_RUN is not set; nothing to look for');
  process.exit(0);
}
const marker = `SIGIL_TEST_RUN=${id}`;

function ppidOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}
const mine = new Set();
for (let p = process.pid; p > 1; p = ppidOf(p)) mine.add(p);

const leaked = [];
for (const name of readdirSync('/proc')) {
  if (!/^\d+$/.test(name) || mine.has(Number(name))) continue;
  try {
    if (!readFileSync(`/proc/${name}/environ`, 'latin1').split('\0').includes(marker)) continue;
    const cmd = readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0').join(' ').trim();
    leaked.push({ pid: Number(name), cmd });
  } catch {
    // exited while we looked, or a kernel thread
  }
}
for (const { pid } of leaked) {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
if (leaked.length > 0) {
  console.error(`test-leftovers: ${leaked.length} process(es) the tests started were still running, killed now:`);
  for (const { pid, cmd } of leaked) console.error(`  ${pid} ${cmd.slice(0, 200)}`);
}
