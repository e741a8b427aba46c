/**
 * Batch progress on stderr: a redrawn bar on a terminal, one plain line per device otherwise
 * (logs, CI, a pipe), so stdout stays free for the summary (`--format json`).
 *
 *   TTY:   [##########----------]  10/20  ok 9  failed 1  GW-0011
 *   plain: ok      GW-0001  sha256:4f…  412 ms
 *          failed  GW-0002  tpm_unavailable: cannot connect to the TPM at 127.0.0.1:2399: …
 */
import type { BatchRow, DeviceOutcome } from './batch.js';

export interface ProgressSink {
  start(row: BatchRow): void;
  done(outcome: DeviceOutcome): void;
  finish(): void;
}

interface Stream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const WIDTH = 24;

export function createProgress(stream: Stream, total: number, opts: { tty?: boolean } = {}): ProgressSink {
  const tty = opts.tty ?? stream.isTTY === true;
  let ok = 0;
  let failed = 0;
  const inFlight = new Set<string>();
  const line = (o: DeviceOutcome): string =>
    o.ok
      ? `ok      ${o.serial}  ${o.idevid_fingerprint ?? ''}  ${o.ms} ms`
      : `failed  ${o.serial}  ${o.code}: ${(o.message ?? '').replace(/\s*\n\s*/g, ' ')}`;
  const bar = (): string => {
    const n = ok + failed;
    const filled = total === 0 ? WIDTH : Math.round((n / total) * WIDTH);
    const text = `[${'#'.repeat(filled)}${'-'.repeat(WIDTH - filled)}] ${String(n).padStart(String(total).length)}/${total}  ok ${ok}  failed ${failed}  ${[...inFlight].join(' ')}`;
    const cols = stream.columns ?? 100;
    return text.length >= cols ? text.slice(0, cols - 1) : text;
  };
  const redraw = (): void => void stream.write(`\r\x1b[2K${bar()}`);
  return {
    start(row) {
      inFlight.add(row.serial);
      if (tty) redraw();
    },
    done(o) {
      inFlight.delete(o.serial);
      if (o.ok) ok++;
      else failed++;
      if (!tty) return void stream.write(`${line(o)}\n`);
      // Failures stay on screen above the bar; successes only move it.
      if (!o.ok) stream.write(`\r\x1b[2K${line(o)}\n`);
      redraw();
    },
    finish() {
      if (tty) stream.write(`\r\x1b[2K${bar()}\n`);
    },
  };
}
