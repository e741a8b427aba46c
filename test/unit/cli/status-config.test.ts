/**
 * `sigil agent status --config` reads three facts of agent.yaml with the YAML parser alone
 * (cli/status-config.ts, issue #19). Where it answers, the answer must be the full loader's
 * (agent/config.ts); where it is not sure it must say so (undefined), and status then runs the
 * full loader — so a TPM key's TCTI or a config it cannot read never comes out different.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../../src/agent/config.js';
import { readStatusFacts } from '../../../src/cli/status-config.js';

const dir = mkdtempSync(join(tmpdir(), 'sigil-status-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const PIN = `sha256:${'0'.repeat(64)}`;
const TOKEN = 'A'.repeat(43);
let n = 0;
function config(body: string): string {
  const file = join(dir, `agent-${n++}.yaml`);
  writeFileSync(file, body);
  return file;
}

describe('readStatusFacts', () => {
  it('a token agent over HTTPS, relative data_dir: what the full loader says', () => {
    const file = config(
      `issuer: https://issuer.example:8443\nca_pin: ${PIN}\ndata_dir: ./data\njoin: { method: token, token: ${TOKEN} }\n`,
    );
    const full = loadAgentConfig(file);
    expect(readStatusFacts(file)).toEqual({ dataDir: full.dataDir, tpmTcti: undefined, mqtt: false });
    expect(full.dataDir).toBe(join(dir, 'data'));
  });

  it('transports with an mqtt entry: mqtt true, as the full loader has it', () => {
    const file = config(
      `transports:\n  - { type: mqtt, url: "mqtt://127.0.0.1:1883" }\n  - { type: https, url: "https://issuer.example" }\n` +
        `ca_pin: ${PIN}\ndata_dir: /var/lib/sigil-agent\njoin: { method: token, token: ${TOKEN} }\n`,
    );
    const full = loadAgentConfig(file);
    expect(readStatusFacts(file)).toEqual({
      dataDir: full.dataDir,
      tpmTcti: full.tpmTcti,
      mqtt: full.transports.some((t) => t.type === 'mqtt'),
    });
    expect(readStatusFacts(file)?.mqtt).toBe(true);
  });

  it('a tpm join (a TPM key, a TCTI with a default): not sure, the full loader decides', () => {
    const file = config(
      `issuer: https://issuer.example\nca_pin: ${PIN}\ndata_dir: /d\njoin: { method: tpm, tpm: { tcti: "swtpm:host=127.0.0.1,port=9" } }\n`,
    );
    expect(readStatusFacts(file)).toBeUndefined();
    expect(loadAgentConfig(file).tpmTcti).toBe('swtpm:host=127.0.0.1,port=9');
  });

  it('not sure either: no file, not YAML, no data_dir, issuer and transports both, key_storage: tpm', () => {
    expect(readStatusFacts(join(dir, 'missing.yaml'))).toBeUndefined();
    expect(readStatusFacts(config('issuer: [unclosed\n'))).toBeUndefined();
    expect(readStatusFacts(config(`issuer: https://x\njoin: { method: token, token: ${TOKEN} }\n`))).toBeUndefined();
    expect(
      readStatusFacts(
        config(
          `issuer: https://x\ntransports: [{ type: https, url: "https://x" }]\ndata_dir: /d\njoin: { method: token, token: ${TOKEN} }\n`,
        ),
      ),
    ).toBeUndefined();
    expect(
      readStatusFacts(config(`issuer: https://x\ndata_dir: /d\nkey_storage: tpm\njoin: { method: x509, x509: {} }\n`)),
    ).toBeUndefined();
    // An evidence join without key_storage: the method could make a TPM key; only the registry knows.
    expect(
      readStatusFacts(config(`issuer: https://x\ndata_dir: /d\njoin: { method: x509, x509: {} }\n`)),
    ).toBeUndefined();
  });

  it('key_storage software or pkcs11: no TPM, whatever the join', () => {
    expect(
      readStatusFacts(
        config(`issuer: https://x\ndata_dir: /d\nkey_storage: software\njoin: { method: tpm, tpm: {} }\n`),
      ),
    ).toEqual({ dataDir: '/d', tpmTcti: undefined, mqtt: false });
  });
});
