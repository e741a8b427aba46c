/**
 * What `sigil` loads for the commands a small gateway runs (issue #19): `--version` answers
 * before the command tree exists, and a token-joined HTTPS agent never loads the PKCS#7 stack
 * (pkijs, asn1js, @noble — the azure join's), pino, classic zod (its schemas are zod/mini), the answer schemas of requests it never
 * sends (credential, workload, attest) or the issuer's code; and only the configured join method's code (join/<m>/schema.ts holds
 * what the config loader needs, the entry's load() the rest) and the credential outputs only
 * when configured; `agent status` loads neither the TPM stack, PKCS#11 nor jose. Each case runs the CLI from src/ under scripts/trace-imports.mjs, which
 * lists every module resolved.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'sigil-lazy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function traced(args: string[]): { code: number | null; stdout: string; modules: string[] } {
  const r = spawnSync(
    process.execPath,
    [
      '--conditions=development',
      '--import',
      'tsx',
      '--import',
      './scripts/trace-imports.mjs',
      'src/cli/main.ts',
      ...args,
    ],
    {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, SIGIL_TRACE_IMPORTS: 'all', SIGIL_LOG_FORMAT: 'json' },
      timeout: 60_000,
    },
  );
  const modules = r.stderr
    .split('\n')
    // One module per line; the per-package summary lines (count, package, import chain) are left out.
    .filter((l) => /^ {4}\S+$/.test(l))
    .map((l) => l.trim());
  expect(r.stderr).toContain('trace-imports:');
  return { code: r.status, stdout: r.stdout, modules };
}

/** A token agent whose issuer does not answer (port 9, discard): run --once loads the whole agent, then exits 75. */
function tokenAgentConfig(): string {
  const file = join(dir, 'agent.yaml');
  writeFileSync(
    file,
    `issuer: https://127.0.0.1:9\nca_pin: sha256:${'0'.repeat(64)}\ndata_dir: ${join(dir, 'data')}\n` +
      `join: { method: token, token: ${'A'.repeat(43)} }\noutputs:\n  - { type: identity, path: ${join(dir, 'id')} }\n`,
  );
  return file;
}

/** A tpm-joined agent: its TPM (port 9) is never reached, since run --once fails at the issuer first. */
function tpmAgentConfig(): string {
  const file = join(dir, 'agent-tpm.yaml');
  writeFileSync(
    file,
    `issuer: https://127.0.0.1:9\nca_pin: sha256:${'0'.repeat(64)}\ndata_dir: ${join(dir, 'tpm-data')}\n` +
      `join: { method: tpm, tpm: { tcti: "swtpm:host=127.0.0.1,port=9" } }\n` +
      `outputs:\n  - { type: identity, path: ${join(dir, 'tpm-id')} }\n`,
  );
  return file;
}

/**
 * The code of each join method other than token. What the config loader reads of every method
 * always loads: schema.ts, descriptor.ts and the plain data they use (oidc's provider names).
 */
const CHEAP_JOIN_FILES = /\/(schema|descriptor)\.ts$|\/oidc\/presets\.ts$/;
const otherJoinCode = (modules: string[]): string[] =>
  modules.filter((m) => /src\/join\/(tpm|x509|aws-iid|azure|gcp|oidc)\//.test(m) && !CHEAP_JOIN_FILES.test(m));
/** The credential outputs: SSH, Kubernetes, database, JWT (agent/credentials.ts and what it brings). */
const CREDENTIAL_OUTPUTS = /src\/agent\/(credentials|credential-client|outputs\/(ssh-|kubernetes|database|jwt))/;

const NOT_FOR_A_TOKEN_AGENT = [
  /node_modules\/pkijs\//,
  /node_modules\/asn1js\//,
  /node_modules\/@noble\//,
  /pino-pretty/,
  /node_modules\/pino\//,
  // The answer schemas of credential, workload and attest requests (protocol/response-verifier.ts).
  /src\/protocol\/(credential|workload|attest)-messages\.ts$/,
  // Classic zod (~3 MB resident): what a token agent validates is written with zod/mini (util/zod-mini.ts).
  /node_modules\/zod\/(index\.js|v4\/classic\/)/,
  // The request schemas: the issuer validates requests, the agent only builds them.
  /src\/protocol\/requests\.ts$/,
];

describe('lazy loading (issue #19)', () => {
  it('`sigil --version` prints the version without loading commander or any command', () => {
    const r = traced(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('0.1.0\n');
    expect(r.modules.filter((m) => /commander|src\/cli\/(?!main)/.test(m))).toEqual([]);
  });

  it('a token agent over HTTPS: `run --once` loads neither PKCS#7, the pretty-printer nor issuer code', () => {
    const r = traced(['agent', 'run', '--once', '--config', tokenAgentConfig()]);
    expect(r.code).toBe(75); // issuer_unreachable: the join was attempted, so the agent was fully loaded
    expect(r.modules.some((m) => m.includes('src/agent/agent.ts'))).toBe(true);
    for (const re of NOT_FOR_A_TOKEN_AGENT) expect(r.modules.filter((m) => re.test(m))).toEqual([]);
    expect(r.modules.filter((m) => /src\/(server|cli\/(ctl|server|factory|doctor))/.test(m))).toEqual([]);
    // Only the configured join method's code, and no credential outputs when none are configured.
    expect(r.modules.some((m) => m.includes('src/join/token/agent.ts'))).toBe(true);
    expect(otherJoinCode(r.modules)).toEqual([]);
    expect(r.modules.filter((m) => CREDENTIAL_OUTPUTS.test(m))).toEqual([]);
    // Its keys are software keys: the TPM client comes in only when a TPM is used
    // (keystore/tpm-access.ts), and jose only when a sealed secret is opened (protocol/answer-key.ts).
    expect(r.modules.filter((m) => /^src\/tpm\/(tpm|execute|transport\/)/.test(m))).toEqual([]);
    expect(r.modules.filter((m) => /node_modules\/jose\//.test(m))).toEqual([]);
  });

  it('a tpm agent loads the tpm join (and the TPM stack), still none of the other methods', () => {
    const r = traced(['agent', 'run', '--once', '--config', tpmAgentConfig()]);
    expect(r.code).toBe(75);
    for (const f of ['src/join/tpm/config.ts', 'src/join/tpm/agent.ts', 'src/join/tpm/ak-store.ts', 'src/tpm/tpm.ts'])
      expect(r.modules).toContain(f);
    expect(otherJoinCode(r.modules).filter((m) => !m.startsWith('src/join/tpm/'))).toEqual([]);
    // Its wire schemas (join/tpm/wire.ts, reattest-wire.ts, join/ek-wire.ts, attest/key-attestation.ts) are zod/mini too.
    expect(r.modules.filter((m) => /node_modules\/zod\/(index\.js|v4\/classic\/)/.test(m))).toEqual([]);
  });

  it('credential outputs in the config: run --once loads them', () => {
    const file = join(dir, 'agent-jwt.yaml');
    writeFileSync(
      file,
      readFileSync(tokenAgentConfig(), 'utf8') + `  - { type: jwt, path: ${join(dir, 'jwt')}, audiences: [vault] }\n`,
    );
    const r = traced(['agent', 'run', '--once', '--config', file]);
    expect(r.code).toBe(75);
    expect(r.modules).toContain('src/agent/credentials.ts');
    expect(otherJoinCode(r.modules)).toEqual([]);
  });

  it('`sigil agent status` of that agent: the same modules stay out', () => {
    const r = traced(['agent', 'status', '--config', tokenAgentConfig()]);
    expect(r.code).toBe(1); // not joined
    expect(r.modules.some((m) => m.includes('src/agent/status.ts'))).toBe(true);
    for (const re of NOT_FOR_A_TOKEN_AGENT) expect(r.modules.filter((m) => re.test(m))).toEqual([]);
    // status reads the state: no join code at all, no key backend, no output, no JWS library.
    expect(otherJoinCode(r.modules)).toEqual([]);
    expect(r.modules.filter((m) => CREDENTIAL_OUTPUTS.test(m))).toEqual([]);
    expect(
      r.modules.filter((m) => /src\/tpm\/|src\/keystore\/(pkcs11\.ts|pkcs11\/module|tpm)|node_modules\/jose\//.test(m)),
    ).toEqual([]);
  });

  it('`agent status --config` of a token agent reads the YAML and the state: no schema library, no config loader, no commander', () => {
    const r = traced(['agent', 'status', '--config', tokenAgentConfig(), '--format', 'json']);
    expect(r.code).toBe(1); // not joined
    expect(r.modules.filter((m) => /node_modules\/(zod|commander)\/|src\/agent\/config\.ts/.test(m))).toEqual([]);
    expect(r.modules).toContain('src/cli/status-config.ts');
  });

  it('`agent run` and `agent status` with plain options skip commander; a usage error still goes through it', () => {
    const once = traced(['agent', 'run', '--once', '--config', tokenAgentConfig()]);
    expect(once.code).toBe(75);
    expect(once.modules.filter((m) => m.includes('node_modules/commander/'))).toEqual([]);
    const bad = traced(['agent', 'status', '--bogus']);
    expect(bad.code).toBe(2);
    expect(bad.modules.some((m) => m.includes('node_modules/commander/'))).toBe(true);
  });
});
