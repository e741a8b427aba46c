/**
 * Batch provisioning (`sigil factory batch --csv devices.csv`): one row per device,
 *
 *   serial,tcti
 *   GW-0001,"swtpm:host=127.0.0.1,port=2321"
 *   GW-0002,device:/dev/tpmrm0
 *
 * (RFC 4180 quoting, since TCTI strings contain commas; the tcti column is optional, `--tpm`
 * is then used for every row; blank lines and lines starting with # are skipped). Rows run
 * `parallel` at a time, each with its own TPM connection; a failing device is recorded with
 * its error code and the batch goes on. Manifest lines are appended by provisionDevice, one
 * complete line per successful device, so the manifest never holds a line for a failed one.
 */
import { SigilError, toSigilError } from '../errors.js';
import { Tpm } from '../tpm/tpm.js';
import { checkManifestWritable, manifestSerials } from './manifest.js';
import { provisionDevice, type ProvisionOptions } from './provision.js';
import { checkDeviceSerial } from './idevid.js';

export interface BatchRow {
  /** 1-based line in the CSV, for messages. */
  line: number;
  serial: string;
  tcti?: string;
}

export interface DeviceOutcome {
  serial: string;
  line: number;
  ok: boolean;
  idevid_fingerprint?: string;
  cert_file?: string;
  code?: string;
  message?: string;
  ms: number;
}

export interface BatchSummary {
  total: number;
  ok: number;
  failed: number;
  manifest: string;
  devices: DeviceOutcome[];
}

/** Split one CSV record (RFC 4180 §2: quoted fields, "" inside quotes). */
function splitCsv(text: string, line: number): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new SigilError('bad_request', `CSV line ${line}: unterminated quoted field`);
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += text[i++];
      }
      if (i < text.length && text[i] !== ',')
        throw new SigilError('bad_request', `CSV line ${line}: text after a closing quote`);
    } else {
      const end = text.indexOf(',', i);
      field = end < 0 ? text.slice(i) : text.slice(i, end);
      i = end < 0 ? text.length : end;
    }
    out.push(field.trim());
    if (i >= text.length) return out;
    i++; // the comma
  }
}

/** Parse the CSV; every malformed row is reported (with its line) before anything runs. */
export function parseBatchCsv(text: string): BatchRow[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  let header: string[] | undefined;
  const rows: BatchRow[] = [];
  const errors: string[] = [];
  const seen = new Map<string, number>();
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '' || raw.trimStart().startsWith('#')) return;
    let cells: string[];
    try {
      cells = splitCsv(raw, line);
    } catch (e) {
      errors.push((e as Error).message);
      return;
    }
    if (header === undefined) {
      header = cells.map((c) => c.toLowerCase());
      if (header[0] !== 'serial' || header.length > 2 || (header.length === 2 && header[1] !== 'tcti')) {
        errors.push(`CSV line ${line}: the header must be "serial" or "serial,tcti" (got "${raw.slice(0, 60)}")`);
      }
      return;
    }
    if (cells.length > header.length)
      return void errors.push(`CSV line ${line}: ${cells.length} fields, the header has ${header.length}`);
    const [serial = '', tcti] = cells;
    try {
      checkDeviceSerial(serial);
    } catch (e) {
      return void errors.push(`CSV line ${line}: ${(e as Error).message}`);
    }
    const dup = seen.get(serial);
    if (dup !== undefined) return void errors.push(`CSV line ${line}: serial ${serial} is also on line ${dup}`);
    seen.set(serial, line);
    rows.push({ line, serial, ...(tcti ? { tcti } : {}) });
  });
  if (header === undefined && errors.length === 0)
    errors.push('the CSV is empty (it needs a "serial[,tcti]" header and one row per device)');
  if (errors.length > 0)
    throw new SigilError(
      'bad_request',
      `${errors.length} problem(s) in the CSV, nothing was provisioned: ${errors.slice(0, 10).join('; ')}${errors.length > 10 ? '; …' : ''}`,
    );
  if (rows.length === 0) throw new SigilError('bad_request', 'the CSV lists no devices');
  return rows;
}

export interface BatchOptions extends Omit<ProvisionOptions, 'tpm' | 'serial' | 'knownSerials'> {
  rows: readonly BatchRow[];
  /** TCTI for rows without one. */
  defaultTcti?: string;
  /** Devices in flight at once (each on its own TPM). Default 1. */
  parallel?: number;
  /** Per-command TPM timeout; real TPMs need seconds for some commands. */
  tpmTimeoutMs?: number;
  onStart?(row: BatchRow): void;
  onDone?(outcome: DeviceOutcome): void;
}

async function provisionRow(o: BatchOptions, row: BatchRow, known: Map<string, number>): Promise<DeviceOutcome> {
  const started = Date.now();
  const tcti = row.tcti ?? o.defaultTcti;
  let tpm: Tpm | undefined;
  try {
    if (!tcti) throw new SigilError('bad_request', `no TPM for ${row.serial}: give a tcti column or --tpm`);
    tpm = await Tpm.open(tcti, {
      startup: true,
      ...(o.tpmTimeoutMs !== undefined ? { timeoutMs: o.tpmTimeoutMs } : {}),
    });
    const r = await provisionDevice({ ...o, tpm, serial: row.serial, knownSerials: known });
    return {
      serial: row.serial,
      line: row.line,
      ok: true,
      idevid_fingerprint: r.line.idevid_fingerprint,
      cert_file: r.certFile,
      ms: Date.now() - started,
    };
  } catch (err) {
    const e = toSigilError(err);
    const message = e.code === 'internal' && err instanceof Error ? err.message : e.message;
    return { serial: row.serial, line: row.line, ok: false, code: e.code, message, ms: Date.now() - started };
  } finally {
    await tpm?.close().catch(() => undefined);
  }
}

export async function runBatch(o: BatchOptions): Promise<BatchSummary> {
  checkManifestWritable(o.manifest);
  const known = manifestSerials(o.manifest);
  const parallel = Math.max(1, Math.min(o.parallel ?? 1, 64));
  const outcomes: DeviceOutcome[] = new Array(o.rows.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < o.rows.length) {
      const i = next++;
      const row = o.rows[i]!;
      o.onStart?.(row);
      const outcome = await provisionRow(o, row, known);
      outcomes[i] = outcome;
      o.onDone?.(outcome);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, o.rows.length) }, worker));
  const ok = outcomes.filter((d) => d.ok).length;
  return { total: outcomes.length, ok, failed: outcomes.length - ok, manifest: o.manifest, devices: outcomes };
}
