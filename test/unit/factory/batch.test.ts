/**
 * The factory's pure parts: the batch CSV (RFC 4180 quoting, since TCTI strings contain
 * commas), the manifest append (one line per device, a torn last line never swallows the next
 * device), the progress output on a terminal and in a log, and the TPM key URI.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseBatchCsv } from '../../../src/factory/batch.js';
import { appendManifestLine, manifestSerials, type ManifestLine } from '../../../src/factory/manifest.js';
import { createProgress } from '../../../src/factory/progress.js';
import { parseTpmKeyUri } from '../../../src/keystore/tpm-persistent.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-factory-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const line = (serial: string): ManifestLine => ({
  serial,
  ek_public_hash: `sha256:${'a'.repeat(64)}`,
  ek_kind: 'rsa-2048',
  idevid_fingerprint: `sha256:${'b'.repeat(64)}`,
  idevid_serial: '01',
  idevid_subject: `serialNumber=${serial}, CN=${serial}`,
  idevid_not_after: '2045-01-01T00:00:00.000Z',
  persistent_handle: '0x81000100',
  provisioned_at: '2025-01-01T00:00:00.000Z',
});

describe('batch CSV', () => {
  it('reads serial and quoted tcti columns, skipping blank and comment lines', () => {
    const rows = parseBatchCsv(
      '\uFEFFserial,tcti\r\n# line 1\nGW-1,"swtpm:host=127.0.0.1,port=2321"\n\nGW-2,device:/dev/tpmrm0\nGW-3\n',
    );
    expect(rows).toEqual([
      { line: 3, serial: 'GW-1', tcti: 'swtpm:host=127.0.0.1,port=2321' },
      { line: 5, serial: 'GW-2', tcti: 'device:/dev/tpmrm0' },
      { line: 6, serial: 'GW-3' },
    ]);
    expect(parseBatchCsv('serial\nA1\n"B2"\n').map((r) => r.serial)).toEqual(['A1', 'B2']);
  });

  it('reports every bad row with its line number and provisions nothing', () => {
    let message = '';
    try {
      parseBatchCsv('serial,tcti\nGW-1,"open\nbad serial!\nGW-2\nGW-2\nGW-4,a,b\n');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^4 problem\(s\) in the CSV, nothing was provisioned: /);
    expect(message).toContain('CSV line 2: unterminated quoted field');
    expect(message).toContain('CSV line 3: device serial "bad serial!" must be');
    expect(message).toContain('CSV line 5: serial GW-2 is also on line 4');
    expect(message).toContain('CSV line 6: 3 fields, the header has 2');
    expect(() => parseBatchCsv('name,port\nx,1\n')).toThrow(/the header must be "serial" or "serial,tcti"/);
    expect(() => parseBatchCsv('')).toThrow(/the CSV is empty/);
    expect(() => parseBatchCsv('serial\n')).toThrow(/lists no devices/);
  });
});

describe('manifest append', () => {
  it('appends whole lines; a torn last line (crash) stays on its own line', () => {
    const m = join(dir, 'm.jsonl');
    appendManifestLine(m, line('GW-1'));
    writeFileSync(m, `${readFileSync(m, 'utf8')}{"serial":"GW-2","idevid_fin`); // a crash mid-write
    appendManifestLine(m, line('GW-3'));
    const lines = readFileSync(m, 'utf8').split('\n');
    expect(lines).toHaveLength(4);
    expect(JSON.parse(lines[0]!).serial).toBe('GW-1');
    expect(lines[1]).toBe('{"serial":"GW-2","idevid_fin');
    expect(JSON.parse(lines[2]!).serial).toBe('GW-3');
    expect(lines[3]).toBe('');
    expect([...manifestSerials(m)]).toEqual([
      ['GW-1', 1],
      ['GW-3', 3],
    ]);
  });
});

describe('progress', () => {
  const sink = (
    isTTY: boolean,
  ): { out: string[]; stream: { isTTY: boolean; columns: number; write(s: string): void } } => {
    const out: string[] = [];
    return { out, stream: { isTTY, columns: 80, write: (s) => void out.push(s) } };
  };

  it('plain lines when not a terminal', () => {
    const { out, stream } = sink(false);
    const p = createProgress(stream, 2);
    p.start({ line: 2, serial: 'GW-1' });
    p.done({ serial: 'GW-1', line: 2, ok: true, idevid_fingerprint: 'sha256:ab', ms: 12 });
    p.done({ serial: 'GW-2', line: 3, ok: false, code: 'tpm_unavailable', message: 'gone', ms: 3 });
    p.finish();
    expect(out.join('')).toBe('ok      GW-1  sha256:ab  12 ms\nfailed  GW-2  tpm_unavailable: gone\n');
  });

  it('a redrawn bar on a terminal, failures kept above it', () => {
    const { out, stream } = sink(true);
    const p = createProgress(stream, 2);
    p.start({ line: 2, serial: 'GW-1' });
    p.done({ serial: 'GW-1', line: 2, ok: true, ms: 1 });
    p.done({ serial: 'GW-2', line: 3, ok: false, code: 'tpm_error', message: 'no', ms: 1 });
    p.finish();
    const text = out.join('');
    expect(text).toContain('\r\x1b[2K[------------------------] 0/2  ok 0  failed 0  GW-1');
    expect(text).toContain('\r\x1b[2Kfailed  GW-2  tpm_error: no\n');
    expect(text.endsWith('\r\x1b[2K[########################] 2/2  ok 1  failed 1  \n')).toBe(true);
  });
});

describe('TPM key URI', () => {
  it('parses handle and tcti, defaulting the tcti to the kernel resource manager', () => {
    expect(parseTpmKeyUri('tpm:handle=0x81000100;tcti=swtpm:host=127.0.0.1,port=2321')).toEqual({
      handle: 0x81000100,
      tcti: 'swtpm:host=127.0.0.1,port=2321',
    });
    expect(parseTpmKeyUri('tpm:handle=0x81000101')).toEqual({ handle: 0x81000101, tcti: 'device:/dev/tpmrm0' });
    expect(() => parseTpmKeyUri('tpm:handle=0x01c00002')).toThrow(/not a persistent handle/);
    expect(() => parseTpmKeyUri('tpm:tcti=device')).toThrow(/needs handle=/);
    expect(() => parseTpmKeyUri('tpm:handle=0x81000100;pin=1')).toThrow(/unknown attribute "pin"/);
  });
});
