/**
 * How fresh the fleet's boot-state attestations are (issue #16; docs/attest-interval.md), from the
 * instances' facts (server/ops/attestation.ts: `attestation`, `last_good_attestation_at`):
 *
 *   sigil_attestation_age_seconds{bot}          the OLDEST last good attestation among the bot's
 *                                               live attesting instances, in seconds
 *   sigil_attestation_failing_instances{bot}    live instances whose last attestation failed
 *
 * One series per bot, not per instance: a fleet of 20,000 machines would be 20,000 series, and the
 * question an alert asks — "is any machine of this fleet overdue?" — is the maximum. The instance
 * itself is one `sigil ctl instances show` away.
 *
 * Live: not locked (a locked instance gets nothing until unlocked; its age would only alarm) and
 * holding a certificate that has not expired (a machine gone for good stops counting when its last
 * certificate does). Attesting: it has an attestation record at all (its join rule names firmware
 * profiles); the others are not in these series.
 *
 * The sample reads every instance, so a scrape reuses the previous one for MIN_SAMPLE_MS: a
 * Prometheus scraping every 15 s then costs one instance listing per 30 s.
 */
import type { InstanceRecord } from '../store/types.js';

export const MIN_SAMPLE_MS = 30_000;

type Series = Array<{ labels: Record<string, string>; value: number }>;

export interface AttestationSeries {
  age: Series;
  failing: Series;
}

/** The series for `instances` at `now` (pure; see the module comment for who counts). */
export function attestationSeries(instances: readonly InstanceRecord[], now: number): AttestationSeries {
  const oldest = new Map<string, number>();
  const failing = new Map<string, number>();
  for (const inst of instances) {
    if (inst.locked || inst.currentNotAfter === null || inst.currentNotAfter <= now) continue;
    const record = inst.facts['attestation'];
    if (!record || typeof record !== 'object') continue;
    const lastGood = inst.facts['last_good_attestation_at'];
    // Never attested well since it joined: as old as the instance.
    const since = typeof lastGood === 'number' && Number.isFinite(lastGood) ? lastGood : inst.createdAt;
    const age = Math.max(0, Math.round((now - since) / 1000));
    oldest.set(inst.bot, Math.max(oldest.get(inst.bot) ?? 0, age));
    const ok = (record as { ok?: unknown }).ok === true;
    failing.set(inst.bot, (failing.get(inst.bot) ?? 0) + (ok ? 0 : 1));
  }
  const series = (m: Map<string, number>): Series =>
    [...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([bot, value]) => ({ labels: { bot }, value }));
  return { age: series(oldest), failing: series(failing) };
}

/**
 * A sampler for both gauges that lists the instances at most once per MIN_SAMPLE_MS (one object
 * per issuer's metrics: nothing is shared between two issuers in one process).
 */
export class AttestationSampler {
  #at = -Infinity;
  #last: AttestationSeries = { age: [], failing: [] };
  #pending: Promise<AttestationSeries> | undefined;

  constructor(
    private readonly list: () => Promise<InstanceRecord[]>,
    private readonly now: () => number,
  ) {}

  async sample(): Promise<AttestationSeries> {
    const now = this.now();
    if (now - this.#at < MIN_SAMPLE_MS) return this.#last;
    // Both gauges refresh in the same scrape: one listing serves them.
    this.#pending ??= this.list()
      .then((all) => {
        this.#last = attestationSeries(all, this.now());
        this.#at = now;
        return this.#last;
      })
      .finally(() => (this.#pending = undefined));
    return this.#pending;
  }
}
