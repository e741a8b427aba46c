import type { Stores } from '../store/types.js';
import { AttestationSampler } from './attestation-metrics.js';
import { Counter, Gauge, Histogram, Registry, SampledGauge } from './registry.js';

/** Window for "certificates about to expire" (matches the 80%-of-TTL alert for 1 h certs). */
const EXPIRING_WINDOW_MS = 12 * 60 * 1000;

/** The issuer's metrics, served at GET /metrics (`registry.scrape()`; docs/alerts.yaml builds on these names). */
export function createIssuerMetrics(stores: Stores, now: () => number) {
  const registry = new Registry();
  const joins = registry.register(new Counter('sigil_joins_total', 'Successful joins by join method'));
  const renewals = registry.register(new Counter('sigil_renewals_total', 'Successful renewals'));
  const refusals = registry.register(
    new Counter('sigil_refusals_total', 'Refused requests by operation, join method and error code'),
  );
  const requests = registry.register(
    new Counter(
      'sigil_requests_total',
      'Agent requests by transport (https, mqtt), operation and outcome (ok, an error code, or dropped_<reason>)',
    ),
  );
  const authFailures = registry.register(
    new Counter('sigil_auth_failures_total', 'Requests refused for failed authentication (401/403)'),
  );
  // Per-second buckets over the last minute: the "auth failures > 5 per minute" signal without
  // needing a PromQL rate (docs/alerts.yaml uses either).
  const authWindow = new Array<number>(60).fill(0);
  let authSecond = Math.floor(now() / 1000);
  const advance = (): void => {
    const sec = Math.floor(now() / 1000);
    for (let s = authSecond + 1; s <= sec && s <= authSecond + 60; s++) authWindow[s % 60] = 0;
    authSecond = Math.max(authSecond, sec);
  };
  const authFailure = (): void => {
    authFailures.inc();
    advance();
    authWindow[authSecond % 60]! += 1;
  };
  registry.register(
    new Gauge('sigil_auth_failures_last_minute', 'Authentication failures (401/403) in the last 60 seconds', () => {
      advance();
      return [{ labels: {}, value: authWindow.reduce((a, b) => a + b, 0) }];
    }),
  );
  const issuance = registry.register(
    new Histogram(
      'sigil_issuance_seconds',
      'Time to decide and sign a join or renewal',
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    ),
  );
  registry.register(
    new SampledGauge(
      'sigil_certificates_expiring_soon',
      'Current certificates expiring within 12 minutes, by bot',
      async () =>
        (await stores.certificates.expiringBefore(now() + EXPIRING_WINDOW_MS, now())).map((r) => ({
          labels: { bot: r.bot },
          value: r.count,
        })),
      { ms: STORE_SAMPLE_MS, now },
    ),
  );
  // Boot-state attestation (issue #16; ./attestation-metrics.ts, docs/attest-interval.md).
  const attestationFailures = registry.register(
    new Counter(
      'sigil_attestation_failures_total',
      'Failed boot-state attestations by failed check (the refusal code) and how they came (join, renew, attest)',
    ),
  );
  const attestations = new AttestationSampler(() => stores.instances.list(), now);
  registry.register(
    new SampledGauge(
      'sigil_attestation_age_seconds',
      "Age of the oldest last good boot-state attestation among a bot's live attesting instances",
      async () => (await attestations.sample()).age,
    ),
  );
  registry.register(
    new SampledGauge(
      'sigil_attestation_failing_instances',
      "A bot's live instances whose last boot-state attestation failed",
      async () => (await attestations.sample()).failing,
    ),
  );
  // Export zeros from the start so increase()/rate() see the first burst too.
  renewals.inc({}, 0);
  authFailures.inc({}, 0);
  const startedAt = now();
  registry.register(
    new Gauge('sigil_issuer_uptime_seconds', 'Seconds since the issuer started', () => [
      { labels: {}, value: Math.round((now() - startedAt) / 1000) },
    ]),
  );
  return { registry, joins, renewals, refusals, requests, authFailure, issuance, attestationFailures };
}

export type IssuerMetrics = ReturnType<typeof createIssuerMetrics>;

/** Store-backed gauges are sampled at most this often however many scrape (SampledGauge). */
export const STORE_SAMPLE_MS = 10_000;
