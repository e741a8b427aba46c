/**
 * One version in three places: package.json, src/version.ts (what the agent sends as
 * `agent_version`, issue #18) and the literal `sigil --version` prints before any import
 * (cli/main.ts, issue #19). A release that bumps one and not the others fails here.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { agentVersionSchema } from '../../src/protocol/requests.js';
import { SIGIL_VERSION } from '../../src/version.js';

const read = (p: string) => readFileSync(new URL(`../../${p}`, import.meta.url), 'utf8');

describe('version', () => {
  it('package.json, src/version.ts and sigil --version agree, and the protocol accepts it', () => {
    expect((JSON.parse(read('package.json')) as { version: string }).version).toBe(SIGIL_VERSION);
    const cli = /const VERSION = '([^']+)'/.exec(read('src/cli/main.ts'));
    expect(cli?.[1] ?? SIGIL_VERSION).toBe(SIGIL_VERSION);
    expect(agentVersionSchema.safeParse(SIGIL_VERSION).success).toBe(true);
  });
});
