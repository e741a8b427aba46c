/**
 * `sigil agent run` imports the early Workload API start (and with it gRPC and protobuf, ~2 MB of
 * a daemon's idle memory) only when agent.yaml can name `workload_api` (src/cli/agent.ts). The
 * word absent: the key is absent, nothing would start early. Present anywhere, or the file
 * unreadable: the early start decides, as before.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mayNameWorkloadApi } from '../../../src/cli/agent.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-wl-early-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const config = (name: string, text: string): string => {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
};

describe('mayNameWorkloadApi', () => {
  it('is false for a config without the word', () => {
    expect(mayNameWorkloadApi(config('plain.yaml', 'issuer: https://x\njoin: { method: token, token: t }\n'))).toBe(
      false,
    );
  });

  it('is true wherever the word is: block key, flow mapping, quoted key', () => {
    expect(mayNameWorkloadApi(config('block.yaml', 'workload_api:\n  socket: /run/s.sock\n'))).toBe(true);
    expect(mayNameWorkloadApi(config('flow.yaml', '{ issuer: x, workload_api: { socket: s } }\n'))).toBe(true);
    expect(mayNameWorkloadApi(config('quoted.yaml', '"workload_api": { socket: s }\n'))).toBe(true);
  });

  it('is true (early-start decides) for a config it cannot read', () => {
    expect(mayNameWorkloadApi(join(dir, 'missing.yaml'))).toBe(true);
  });
});
