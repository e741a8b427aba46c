/**
 * Test harness for end-to-end tests: runs the built `sigil` binary as a real process and
 * starts real issuers on 127.0.0.1 with a free port (port 0) in temp dirs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { renewalsRefused, type AgentStatusReport } from '../../src/agent/status.js';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const SIGIL = join(ROOT, 'bin', 'sigil.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function sigil(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const p = spawn(process.execPath, [SIGIL, ...args], {
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolveRun({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** `okCodes`: further exit codes that still print the JSON document (e.g. 1 for `agent status` of an expired identity). */
export async function sigilJson<T = any>(args: string[], opts: { okCodes?: number[] } = {}): Promise<T> {
  const r = await sigil([...args, '--format', 'json']);
  if (r.code !== 0 && !(opts.okCodes ?? []).includes(r.code))
    throw new Error(`sigil ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** The issuer's audit rows of the last `since` (`sigil ctl audit --format json`), oldest first. */
export function auditRows(dataDir: string, since = '10m'): Promise<Array<Record<string, any>>> {
  return sigilJson(['ctl', '--data-dir', dataDir, 'audit', '--since', since]);
}

/**
 * `sigil agent status <args> --format json`. It exits 1 exactly when the identity cannot be used
 * (`expired`, `not_joined`, or renewals refused because the instance or bot is locked or its
 * attestation was refused) and 0 otherwise; this checks that pairing on every call.
 */
export async function agentStatusJson<T = any>(args: string[]): Promise<T> {
  const r = await sigil(['agent', 'status', ...args, '--format', 'json']);
  if (r.code !== 0 && r.code !== 1)
    throw new Error(`sigil agent status ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  const s = JSON.parse(r.stdout) as T & AgentStatusReport;
  const unusable = s.state === 'expired' || s.state === 'not_joined' || renewalsRefused(s) !== undefined;
  if (r.code !== (unusable ? 1 : 0))
    throw new Error(`sigil agent status: state ${s.state} but exit ${r.code}: ${r.stderr}`);
  return s;
}

export function tempDir(prefix = 'sigil-test-'): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface RunningIssuer {
  url: string;
  pin: string;
  dataDir: string;
  proc: ChildProcess;
  log: () => string;
  stop(): Promise<void>;
  /** Start again on the same port (after stop), e.g. "issuer comes back". */
  restart(): Promise<void>;
}

async function spawnServer(
  dataDir: string,
  listen: string,
): Promise<{ proc: ChildProcess; url: string; logs: string[] }> {
  const proc = spawn(process.execPath, [SIGIL, 'server', 'start', '--data-dir', dataDir, '--listen', listen], {
    env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  proc.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const url = await new Promise<string>((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`issuer did not start: ${logs.join('')}`)), 20_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (https:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        res(m[1]!);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`issuer exited ${code}: ${logs.join('')}`));
    });
  });
  return { proc, url, logs };
}

/** `sigil server init` of `dataDir`: its CA pin. */
export async function initIssuer(dataDir: string, trustDomain = 'example.org'): Promise<string> {
  return (await sigilJson<{ ca_pin: string }>(['server', 'init', '--data-dir', dataDir, '--trust-domain', trustDomain]))
    .ca_pin;
}

export async function startIssuer(dir: string, trustDomain = 'example.org'): Promise<RunningIssuer> {
  const dataDir = join(dir, 'issuer');
  const init = { ca_pin: await initIssuer(dataDir, trustDomain) };
  let s = await spawnServer(dataDir, '127.0.0.1:0');
  const port = new URL(s.url).port;
  const stop = async (): Promise<void> => {
    if (s.proc.exitCode !== null) return;
    const exited = new Promise((r) => s.proc.once('exit', r));
    s.proc.kill('SIGTERM');
    await exited;
  };
  const issuer: RunningIssuer = {
    url: s.url,
    pin: init.ca_pin,
    dataDir,
    get proc() {
      return s.proc;
    },
    log: () => s.logs.join(''),
    stop,
    restart: async () => {
      await stop();
      s = await spawnServer(dataDir, `127.0.0.1:${port}`);
    },
  };
  return issuer;
}

export const RESOURCES = `kind: role
name: edge
spec: { max_ttl: 24h, ssh_logins: ["{{internal.logins}}"] }
---
kind: bot
name: gw
spec: { roles: [edge], traits: { logins: [ops] } }
`;

export async function applyResources(issuer: RunningIssuer, dir: string, yaml = RESOURCES): Promise<void> {
  const f = join(dir, `resources-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, yaml);
  await sigilJson(['ctl', '--data-dir', issuer.dataDir, 'apply', '-f', f]);
}

export async function createToken(issuer: RunningIssuer, bot = 'gw', ttl = '15m'): Promise<string> {
  const r = await sigilJson<{ token: string }>([
    'ctl',
    '--data-dir',
    issuer.dataDir,
    'token',
    'create',
    '--bot',
    bot,
    '--ttl',
    ttl,
  ]);
  return r.token;
}

export function writeAgentConfig(
  dir: string,
  name: string,
  o: { url: string; pin: string; token: string; ttl?: string; extra?: string },
): { config: string; dataDir: string; outDir: string } {
  const dataDir = join(dir, name, 'data');
  const outDir = join(dir, name, 'identity');
  const config = join(dir, `${name}.yaml`);
  writeFileSync(
    config,
    `issuer: ${o.url}\nca_pin: ${o.pin}\ndata_dir: ${dataDir}\n${o.ttl ? `ttl: ${o.ttl}\n` : ''}join: { method: token, token: ${o.token} }\noutputs:\n  - { type: identity, path: ${outDir} }\n${o.extra ?? ''}`,
  );
  return { config, dataDir, outDir };
}
