/**
 * The issuer's pushed events (docs/events.md), owned by the IssuerService: audit rows from the
 * issuer's AuditWatcher (shared with the CRL) and the CRL's changes become signed events
 * (./derive.ts, ./event.ts), and each event goes to every configured receiver through its own
 * bounded delivery queue (./delivery.ts: webhooks, the MQTT broker).
 *
 * Metrics (GET /metrics): sigil_events_delivered_total{sink}, sigil_events_failed_total{sink}
 * (failed sends, retried or not), sigil_events_dead_letter_total{sink,reason}.
 */
import { Counter } from '../metrics/registry.js';
import type { IssuerContext } from '../issuer.js';
import type { CrlPublisher, PublishedCrl } from '../crl/publisher.js';
import type { AuditBatch, AuditWatcher } from './audit-watcher.js';
import { DeliveryQueue, type DeliveryCounters, type EventSink, type RetryPolicy } from './delivery.js';
import { eventsOfRow } from './derive.js';
import { signEvent, type EventFact, type SigilEvent } from './event.js';

export interface EventPublisherOptions {
  ctx: Pick<IssuerContext, 'server' | 'ca' | 'stores' | 'metrics' | 'now' | 'log'>;
  watcher: AuditWatcher;
  /** certificate_revoked events come from its changes. */
  crl?: CrlPublisher;
  sinks: readonly EventSink[];
  retry?: RetryPolicy;
  queueLimit?: number;
  random?: () => number;
}

export class EventPublisher {
  readonly queues: readonly DeliveryQueue[];
  readonly #o: EventPublisherOptions;
  readonly #deadLetters: Counter;
  #chain: Promise<void> = Promise.resolve();

  constructor(o: EventPublisherOptions) {
    this.#o = o;
    const { registry } = o.ctx.metrics;
    const delivered = registry.register(
      new Counter('sigil_events_delivered_total', 'Signed events delivered, by receiver (docs/events.md)'),
    );
    const failed = registry.register(
      new Counter('sigil_events_failed_total', 'Failed event sends, by receiver (each retry counts)'),
    );
    this.#deadLetters = registry.register(
      new Counter(
        'sigil_events_dead_letter_total',
        'Events given up on, by receiver and reason (refused, retries_exhausted, queue_full, stopped)',
      ),
    );
    const counters: DeliveryCounters = {
      delivered: (sink) => delivered.inc({ sink }),
      failed: (sink) => failed.inc({ sink }),
      deadLetter: (sink, reason) => this.#deadLetters.inc({ sink, reason }),
    };
    for (const s of o.sinks) {
      delivered.inc({ sink: s.name }, 0);
      failed.inc({ sink: s.name }, 0);
      this.#deadLetters.inc({ sink: s.name, reason: 'retries_exhausted' }, 0);
    }
    const log = o.ctx.log.child({ component: 'events' });
    this.queues = o.sinks.map(
      (sink) =>
        new DeliveryQueue(sink, {
          counters,
          log,
          ...(o.retry ? { retry: o.retry } : {}),
          ...(o.queueLimit !== undefined ? { limit: o.queueLimit } : {}),
          ...(o.random ? { random: o.random } : {}),
        }),
    );
    o.watcher.subscribe((batch) => this.#onAudit(batch));
    o.crl?.onChange((crl, prev) => this.#onCrl(crl, prev));
  }

  /** Dead letters so far, all receivers and reasons. */
  deadLetters(): number {
    return this.#o.sinks.reduce(
      (n, s) =>
        n +
        ['refused', 'retries_exhausted', 'queue_full', 'stopped'].reduce(
          (m, reason) => m + this.#deadLetters.get({ sink: s.name, reason }),
          0,
        ),
      0,
    );
  }

  async #onAudit(batch: AuditBatch): Promise<void> {
    const locked = async (id: string): Promise<boolean> =>
      (await this.#o.ctx.stores.instances.get(id))?.locked ?? false;
    for (const row of batch.rows) for (const fact of await eventsOfRow(row, locked)) this.emit(fact);
  }

  #onCrl(crl: PublishedCrl, previous: PublishedCrl | undefined): void {
    // The first CRL after start lists what was revoked before: announced then, not again.
    if (previous === undefined) return;
    const before = new Set(previous.entries.map((e) => e.serial));
    const added = crl.entries.filter((e) => !before.has(e.serial));
    if (added.length === 0) return;
    // In order after the audit events of the same look (the lock comes before its revocations).
    this.#chain = this.#chain.then(async () => {
      for (const e of added) {
        const inst = await this.#o.ctx.stores.instances.get(e.instanceId).catch(() => undefined);
        this.emit({
          type: 'certificate_revoked',
          time: new Date(e.revokedAt).toISOString(),
          instance_id: e.instanceId,
          bot: inst?.bot ?? null,
          idSource: `${e.serial}\n${e.revokedAt}`,
          data: {
            serial: e.serial,
            reason: 'certificateHold',
            cause: e.cause,
            crl_number: crl.crlNumber.toString(),
            next_update: new Date(crl.nextUpdate).toISOString(),
          },
        });
      }
    });
  }

  /** Sign a fact now (with the current serving key) and queue it for every receiver. */
  emit(fact: EventFact): SigilEvent {
    const { ctx } = this.#o;
    const { jws, event } = signEvent(ctx.server, ctx.ca.trustDomain, fact, ctx.now());
    ctx.log.info({ event_id: event.id, type: event.type, instance: event.instance_id }, 'event');
    for (const q of this.queues) q.push(jws, event);
    return event;
  }

  /** Resolves when every queue is empty (tests). */
  async idle(): Promise<void> {
    await this.#chain;
    await Promise.all(this.queues.map((q) => q.idle()));
  }

  stop(): void {
    for (const q of this.queues) q.stop();
  }
}
