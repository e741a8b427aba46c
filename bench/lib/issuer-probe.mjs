/**
 * Preloaded into the benched issuer process (`node --import <this file> bin/sigil.js server start`,
 * bench/lib/issuer-process.ts `probe`) to say where its latency tail comes from (issue #14):
 *
 *   - event-loop delay (perf_hooks.monitorEventLoopDelay, sampled every 5 ms: few enough wakeups
 *     not to change how requests batch): how long a ready callback waited for the loop — every
 *     request queued behind a long task pays it;
 *   - GC pauses (PerformanceObserver 'gc' entries): count, total and longest, and per kind (minor =
 *     scavenge, major = mark-compact, incremental = a marking step, weakcb = weak callbacks):
 *     which collector makes the longest pauses;
 *   - stalls: GC pauses and group commits that held the loop for ≥ 10 ms (count and total), from
 *     which the bench estimates the share of requests a stall delayed (renew-https.ts stallShare);
 *   - the SQLite group commits (diagnostics_channel `sigil:sqlite:group`, published by
 *     src/server/store/sqlite/async.ts only while someone subscribes): members per COMMIT, how
 *     long a group held the loop, and how long its COMMIT took (a WAL checkpoint runs inside the
 *     COMMIT that crosses wal_autocheckpoint);
 *   - on PostgreSQL, the statements and round trips the issuer's pool sends (diagnostics_channel
 *     `sigil:postgres:statement`), which the bench divides by the renewals of the phase.
 *
 * Driven by signals so the issuer needs no bench code: SIGUSR2 writes the figures gathered since
 * the last SIGUSR2 to $SIGIL_BENCH_PROBE_FILE (JSON, written whole then renamed) and starts
 * afresh. Nothing here runs unless the bench preloads it.
 */
import { subscribe } from 'node:diagnostics_channel';
import { renameSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

const out = process.env.SIGIL_BENCH_PROBE_FILE;
/** perf_hooks constants.NODE_PERFORMANCE_GC_* (entry.detail.kind). */
const GC_KINDS = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' };
/** A pause or a group's hold of the loop this long counts as a stall (the tail's usual suspects). */
const STALL_MS = 10;
if (out) {
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const fresh = () => ({
    gc: [],
    gcByKind: {},
    groups: [],
    stalls: { gc: { n: 0, ms: 0 }, group: { n: 0, ms: 0 } },
    commitMs: [],
    holdMs: [],
    pgStatements: 0,
    pgTurns: 0,
    since: performance.now(),
  });
  // PostgreSQL (src/server/store/postgres/connection.ts): statements, and round trips counted per
  // connection — a connection serves one transaction at a time, and the statements it is given in
  // one turn of the event loop go out together (pipelined), so each turn with a statement on a
  // connection is one round trip of the transaction holding it (as test/unit/store/postgres-issuer.test.ts).
  const openTurns = new Set();
  subscribe('sigil:postgres:statement', (m) => {
    w.pgStatements++;
    if (openTurns.has(m.conn)) return;
    w.pgTurns++;
    if (openTurns.size === 0) setImmediate(() => openTurns.clear());
    openTurns.add(m.conn);
  });
  let w = fresh();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      w.gc.push(e.duration);
      const kind = GC_KINDS[e.detail?.kind] ?? `kind${e.detail?.kind}`;
      const k = (w.gcByKind[kind] ??= { n: 0, sumMs: 0, maxMs: 0 });
      k.n++;
      k.sumMs += e.duration;
      k.maxMs = Math.max(k.maxMs, e.duration);
      if (e.duration >= STALL_MS) {
        w.stalls.gc.n++;
        w.stalls.gc.ms += e.duration;
      }
    }
  }).observe({ entryTypes: ['gc'] });
  subscribe('sigil:sqlite:group', (m) => {
    w.groups.push(m.size);
    w.commitMs.push(m.commitMs);
    w.holdMs.push(m.holdMs);
    if (m.holdMs >= STALL_MS) {
      w.stalls.group.n++;
      w.stalls.group.ms += m.holdMs;
    }
  });
  const pct = (xs, p) => {
    if (xs.length === 0) return null;
    const s = Float64Array.from(xs).sort();
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
  };
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const dist = (xs) => ({
    n: xs.length,
    mean: xs.length ? sum(xs) / xs.length : null,
    p50: pct(xs, 50),
    p90: pct(xs, 90),
    p99: pct(xs, 99),
    max: xs.length ? Math.max(...xs) : null,
    sum: sum(xs),
  });
  process.on('SIGUSR2', () => {
    const ms = (ns) => ns / 1e6;
    const report = {
      seconds: (performance.now() - w.since) / 1000,
      loopDelayMs: {
        p50: ms(loop.percentile(50)),
        p90: ms(loop.percentile(90)),
        p99: ms(loop.percentile(99)),
        max: ms(loop.max),
        mean: ms(loop.mean),
      },
      gcMs: dist(w.gc),
      gcByKind: w.gcByKind,
      stalls: w.stalls,
      groupSize: dist(w.groups),
      commitMs: dist(w.commitMs),
      groupHoldMs: dist(w.holdMs),
      pgStatements: w.pgStatements,
      pgRoundTrips: w.pgTurns,
    };
    const tmp = `${out}.tmp`;
    writeFileSync(tmp, JSON.stringify(report));
    renameSync(tmp, out);
    loop.reset();
    w = fresh();
  });
}
