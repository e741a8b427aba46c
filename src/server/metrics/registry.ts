/**
 * A minimal Prometheus text-format registry (exposition format 0.0.4). Hand-written because
 * Sigil needs three metric kinds and no default process collectors; prom-client would add a
 * dependency for ~100 lines.
 */

type Labels = Record<string, string>;

const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const fmtLabels = (l: Labels): string => {
  const keys = Object.keys(l);
  return keys.length ? `{${keys.map((k) => `${k}="${esc(l[k]!)}"`).join(',')}}` : '';
};
const keyOf = (l: Labels): string => JSON.stringify(Object.entries(l).sort(([a], [b]) => (a < b ? -1 : 1)));

interface Metric {
  render(): string;
  /** Fetch what `render` shows, for metrics whose source is asynchronous (a store). */
  refresh?(): Promise<void>;
}

type Series = Array<{ labels: Labels; value: number }>;

/**
 * Series one counter may hold before new label sets fold into one series whose every label is
 * "overflow". Label values are meant to come from fixed sets (issue #11 item 5: a label taken
 * from a request once made 20k series); this is the backstop if one ever does not.
 */
export const MAX_SERIES = 1000;

export class Counter implements Metric {
  private readonly values = new Map<string, { labels: Labels; v: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly maxSeries: number = MAX_SERIES,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    let k = keyOf(labels);
    if (!this.values.has(k) && this.values.size >= this.maxSeries) {
      labels = Object.fromEntries(Object.keys(labels).map((n) => [n, 'overflow']));
      k = keyOf(labels);
    }
    const e = this.values.get(k);
    if (e) e.v += by;
    else this.values.set(k, { labels, v: by });
  }
  get(labels: Labels = {}): number {
    return this.values.get(keyOf(labels))?.v ?? 0;
  }
  /** Series held (for tests of the bound). */
  get series(): number {
    return this.values.size;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, v } of this.values.values()) lines.push(`${this.name}${fmtLabels(labels)} ${v}`);
    return lines.join('\n');
  }
}

export class Gauge implements Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly collect: () => Series,
  ) {}
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const { labels, value } of this.collect()) lines.push(`${this.name}${fmtLabels(labels)} ${value}`);
    return lines.join('\n');
  }
}

/**
 * A gauge read from an asynchronous source (the issuer's store): `refresh()` samples it, `render()`
 * shows the last sample. The registry refreshes every such gauge before it renders a scrape
 * ({@link Registry.scrape}), so a scrape sees the store as of that scrape; rendering stays
 * synchronous and never waits on the store.
 */
export class SampledGauge implements Metric {
  private last: Series = [];
  private sampledAt: number | undefined;
  private running: Promise<void> | undefined;
  /**
   * `every`: sample the source at most once per `ms` of `now` — GET /metrics is open to anyone
   * who reaches the port, and a store query per scrape at 100,000 machines held the event loop
   * for ~100 ms (review of issue #16). Concurrent scrapes share one sample.
   */
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly sample: () => Promise<Series>,
    private readonly every?: { ms: number; now: () => number },
  ) {}
  async refresh(): Promise<void> {
    if (this.running) return this.running;
    const e = this.every;
    if (e && this.sampledAt !== undefined && e.now() - this.sampledAt < e.ms) return;
    this.running = (async () => {
      try {
        this.last = await this.sample();
        if (e) this.sampledAt = e.now();
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const { labels, value } of this.last) lines.push(`${this.name}${fmtLabels(labels)} ${value}`);
    return lines.join('\n');
  }
}

export class Histogram implements Metric {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: number[],
  ) {
    this.counts = buckets.map(() => 0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) this.counts[i]!++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`));
    lines.push(
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${this.sum}`,
      `${this.name}_count ${this.count}`,
    );
    return lines.join('\n');
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];
  register<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  render(): string {
    return this.metrics.map((m) => m.render()).join('\n') + '\n';
  }
  /** What GET /metrics serves: the sampled gauges refreshed, then everything rendered. */
  async scrape(): Promise<string> {
    await Promise.all(this.metrics.map((m) => m.refresh?.()));
    return this.render();
  }
}
