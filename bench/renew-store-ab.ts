/**
 * Issuer CPU per renewal on PostgreSQL next to SQLite, at the SAME operating point (issue #15).
 *
 *   npm run bench -- renew-store-ab [--rate 400] [--rounds 3] [--seconds 5] [--agents 32] [--workers N]
 *
 * CPU per renewal falls as the rate rises (more requests share each wake-up, each TLS write, each
 * timer), and a closed loop runs each backend at its own rate: PostgreSQL, with its round trips,
 * completes fewer renewals per agent, so a closed-loop comparison puts it at a lower rate and
 * charges it for that. Here both backends get the same offered open-loop rate (`renew-https
 * --rate R`, Poisson arrivals), run one after the other, alternating SQLite / PostgreSQL for
 * `--rounds` pairs (A/B/A/B: a machine that gets busier or quieter affects both), each a child
 * process of its own. Printed per pair: the issuer CPU per renewal of each (from /proc), the
 * PostgreSQL server's, the ratio, and the rate each actually completed — a run that fell short of
 * the offered rate (the backlog case) is flagged, its figure is not at the same operating point.
 *
 * Last stdout line: one JSON object with every pair and the median ratio.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    rate: { type: 'string', default: '400' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    agents: { type: 'string', default: '32' },
    workers: { type: 'string' },
  },
});
const RATE = Number(opt.rate);
const ROUNDS = Number(opt.rounds);
if (!(RATE > 0) || !(ROUNDS >= 1)) {
  process.stderr.write('usage: renew-store-ab [--rate R] [--rounds N] [--seconds S] [--agents A] [--workers W]\n');
  process.exit(2);
}
const bench = fileURLToPath(new URL('./renew-https.ts', import.meta.url));

interface Run {
  store: 'sqlite' | 'postgres';
  issuerMs: number;
  pgMs?: number;
  perS: number;
  p99: number;
  otherPct: number;
  short: boolean;
}

function runOnce(store: Run['store']): Run {
  const args = ['--store', store, '--rate', String(RATE), '--seconds', opt.seconds!, '--agents', opt.agents!];
  if (opt.workers) args.push('--workers', opt.workers);
  const r = spawnSync(process.execPath, ['--import', 'tsx', bench, ...args, '--peer', 'none'], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  if (r.status !== 0 || !last.startsWith('{'))
    throw new Error(`renew-https --store ${store} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  const j = JSON.parse(last) as Record<string, number>;
  return {
    store,
    issuerMs: j['issuer_cpu_ms_per_renewal']!,
    ...(j['postgres_cpu_ms_per_renewal'] !== undefined ? { pgMs: j['postgres_cpu_ms_per_renewal'] } : {}),
    perS: j['renewals_per_s']!,
    p99: j['p99_ms']!,
    otherPct: j['other_cpu_pct']!,
    // Fell behind the offered rate (a backlog): not the same operating point.
    short: j['renewals_per_s']! < 0.95 * RATE,
  };
}

const pairs: Array<{ sqlite: Run; postgres: Run; ratio: number }> = [];
console.log(`issuer CPU per renewal at ${RATE} renewals/s offered (open loop), SQLite / PostgreSQL alternating`);
console.log('pair  SQLite ms (done/s, p99)     PostgreSQL ms (done/s, p99)   PG server ms  ratio  other CPU %');
for (let i = 1; i <= ROUNDS; i++) {
  const sqlite = runOnce('sqlite');
  const postgres = runOnce('postgres');
  const ratio = postgres.issuerMs / sqlite.issuerMs;
  pairs.push({ sqlite, postgres, ratio });
  const flag = (r: Run): string => (r.short ? ' SHORT' : '');
  console.log(
    `${String(i).padEnd(5)} ${sqlite.issuerMs.toFixed(3)} (${sqlite.perS.toFixed(0)}/s, ${sqlite.p99.toFixed(0)} ms)${flag(sqlite)}`.padEnd(
      34,
    ) +
      `${postgres.issuerMs.toFixed(3)} (${postgres.perS.toFixed(0)}/s, ${postgres.p99.toFixed(0)} ms)${flag(postgres)}`.padEnd(
        30,
      ) +
      `${(postgres.pgMs ?? NaN).toFixed(3)}`.padEnd(14) +
      `${ratio.toFixed(2)}×`.padEnd(7) +
      `${sqlite.otherPct.toFixed(0)} / ${postgres.otherPct.toFixed(0)}`,
  );
}
const sorted = pairs.map((p) => p.ratio).sort((a, b) => a - b);
const median = sorted[Math.floor(sorted.length / 2)]!;
const short = pairs.some((p) => p.sqlite.short || p.postgres.short);
console.log(
  `median ratio ${median.toFixed(2)}× (issue #15 target ≤ 1.3×)` +
    (short ? '; SHORT: a run completed < 95% of the offered rate (backlogged): lower --rate' : ''),
);
console.log(
  JSON.stringify({
    bench: 'renew-store-ab',
    rate: RATE,
    rounds: ROUNDS,
    median_ratio: Number(median.toFixed(3)),
    pairs: pairs.map((p) => ({
      sqlite_issuer_ms: p.sqlite.issuerMs,
      postgres_issuer_ms: p.postgres.issuerMs,
      postgres_server_ms: p.postgres.pgMs,
      ratio: Number(p.ratio.toFixed(3)),
      sqlite_per_s: p.sqlite.perS,
      postgres_per_s: p.postgres.perS,
      short: p.sqlite.short || p.postgres.short,
    })),
  }),
);
