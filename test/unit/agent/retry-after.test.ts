/**
 * An issuer that answers 429 with Retry-After (rate_limited, transport/https/server.ts join rate
 * limit) is not asked again sooner than it said, whatever the backoff would have chosen.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { Agent } from '../../../src/agent/agent.js';
import { parseAgentConfig } from '../../../src/agent/config.js';
import { SigilError } from '../../../src/errors.js';
import type { IssuerTransport } from '../../../src/transport/types.js';
import { silentLogger } from '../../../src/util/log.js';

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it('a rate_limited refusal with retryAfterMs sets the next attempt at least that far out', async () => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-retry-after-'));
  const yaml = `issuer: https://127.0.0.1:9\nca_pin: sha256:${'ab'.repeat(32)}\ndata_dir: data\njoin: { method: token, token: ${'T'.repeat(43)} }\n`;
  const limited: IssuerTransport = {
    kind: 'https',
    url: 'https://issuer.test',
    ensureRoot: async () => '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
    bundle: async () => ({}),
    close: () => undefined,
    post: async () => {
      throw new SigilError('rate_limited', 'too many joins from 127.0.0.1', { retryAfterMs: 90_000 });
    },
  };
  const now = 1_800_000_000_000;
  const agent = new Agent(parseAgentConfig(yaml, join(dir, 'agent.yaml')), silentLogger(), {
    transports: [limited],
    now: () => now,
    rand: () => 0,
  });
  try {
    const t = await agent.tick();
    expect(t.action === 'failed' && t.error.code).toBe('rate_limited');
    expect(agent.state.getStatus().nextAttemptAt).toBeGreaterThanOrEqual(now + 90_000);
    expect(agent.nextWake()).toBeGreaterThanOrEqual(now + 90_000);
  } finally {
    await agent.close();
  }
});
