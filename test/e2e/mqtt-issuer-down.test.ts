/**
 * The issuer is down for longer than the certificate lifetime while the broker stays up: the
 * agent keeps serving its identity until expiry, retrying with backoff (no busy loop), and then
 * — a token agent cannot re-attest by itself — reports reattest_required with the admin command
 * that fixes it, without needing the issuer to say so. A new token brings it back.
 * (TPM/x509 agents re-join by themselves at that point: agent.ts, canReattest.)
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentStatusJson, createToken, SIGIL, sigil, sigilJson } from '../helpers/cli.js';
import { spawnIssuer, waitFor, writeTransportAgent } from '../helpers/mosquitto.js';
import { useMqttIssuerRig } from '../helpers/mqtt-rig.js';

describe('issuer down longer than the certificate lifetime, broker up', () => {
  const rig = useMqttIssuerRig('sigil-mqtt-down-');
  const { tmp, dataDir, admin } = rig;

  it('serves until expiry, then reports reattest_required; a new token re-joins', async () => {
    const a = writeTransportAgent(tmp.path, 'edge', {
      pin: rig.pin,
      token: await createToken(admin),
      transports: [`{ type: mqtt, url: "${rig.broker.url}", timeout: 2s }`],
      extra: 'ttl: 30s\n',
    });
    // The lifetime and every wait below scale with how fast this machine runs the CLI right now
    // (measured on this agent's config before it joins): 30 s on an idle machine, longer on a
    // loaded one, so "before the expiry" still leaves room for a renewal attempt to happen.
    const cliMs = await cliLatencyMs(a.config);
    const ttlS = lifetimeForLatency(cliMs);
    console.log(`mqtt-issuer-down: the CLI took ${cliMs.toFixed(0)} ms here: certificate lifetime ${ttlS} s`);
    writeFileSync(a.config, readFileSync(a.config, 'utf8').replace('ttl: 30s', `ttl: ${ttlS}s`));
    const graceMs = Math.max(15_000, 10 * cliMs);
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    const notAfter = Date.parse(joined.not_after);
    await rig.issuer!.kill();
    rig.issuer = undefined;

    const daemon = spawn(process.execPath, [SIGIL, 'agent', 'run', '--config', a.config], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
    });
    let log = '';
    daemon.stderr.on('data', (d: Buffer) => (log += d.toString()));
    try {
      // Before expiry: still serving the same certificate while renewals fail and back off.
      const during = await waitFor(
        'a failed renewal',
        async () => {
          const s = await agentStatusJson(['--config', a.config]);
          return s.consecutive_failures >= 1 ? s : undefined;
        },
        notAfter - Date.now() + graceMs,
        250,
      );
      // The agent's own record of its first failed attempt (its log), not when this test looked:
      // the renewal was attempted, and failed, while the certificate was still valid.
      expect(firstFailureAt(log)).toBeLessThan(notAfter);
      expect(during).toMatchObject({ serial: joined.serial, transport: `mqtt ${rig.broker.url}` });
      expect(during.last_error).toMatch(/^issuer_unreachable: /);
      expect(readFileSync(join(a.outDir, 'svid.pem'), 'utf8')).toContain('BEGIN CERTIFICATE');

      const after = await waitFor(
        'reattest_required after expiry',
        async () => {
          const s = await agentStatusJson(['--config', a.config]);
          return /^reattest_required: /.test(s.last_error ?? '') ? s : undefined;
        },
        Math.max(5_000, notAfter - Date.now() + graceMs),
        250,
      );
      expect(Date.now()).toBeGreaterThanOrEqual(notAfter);
      expect(after.state).toBe('expired');
      expect(after.last_error).toContain('sigil ctl --data-dir <issuer-data-dir> token create --bot gw');
      expect(after.last_error).toContain(`sigil agent run --once --config ${a.config}`);
      // The last certificate stays on disk (workloads decide what an expired one means to them).
      expect(existsSync(join(a.outDir, 'svid.pem'))).toBe(true);
      // Backoff, not a busy loop: a handful of attempts over the lifetime (full-jitter backoff
      // from 1 s doubling: about log2 of the outage in seconds, plus the renewal itself).
      const history = (log.match(/attempt failed/g) ?? []).length;
      expect(history).toBeGreaterThanOrEqual(2);
      expect(history).toBeLessThan(20);
    } finally {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }

    // The issuer is back; the spent token still cannot re-join, a new one can.
    rig.issuer = await spawnIssuer(dataDir, ['--mqtt-url', rig.broker.url]);
    const again = await sigil(['agent', 'run', '--config', a.config, '--once']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error\[reattest_required\]: /m);
    writeFileSync(
      a.config,
      readFileSync(a.config, 'utf8').replace(/token: \S+ \}/, `token: ${await createToken(admin)} }`),
    );
    const rejoined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(rejoined).toMatchObject({ result: 'joined', generation: 1 });
    expect(rejoined.serial).not.toBe(joined.serial);
  }, 300_000);
});

/**
 * How long this machine takes, right now, to run the CLI on `config` (an `agent status` before the
 * join: process start, module load, config and state): the slower of two runs.
 */
async function cliLatencyMs(config: string): Promise<number> {
  let worst = 0;
  for (let i = 0; i < 2; i++) {
    const t0 = performance.now();
    await sigil(['agent', 'status', '--config', config, '--format', 'json']);
    worst = Math.max(worst, performance.now() - t0);
  }
  return worst;
}

/**
 * The certificate lifetime for a machine that runs the CLI in `cliMs`: the issuer's shortest
 * (30 s) when idle; otherwise long enough that the 40 % of it after the renewal point holds ten
 * CLI runs (the daemon's start, its attempt, this test's status reads).
 */
function lifetimeForLatency(cliMs: number): number {
  return Math.max(30, Math.ceil((25 * cliMs) / 1000));
}

/** Epoch ms of the first "attempt failed" line of the agent's JSON log. */
function firstFailureAt(log: string): number {
  for (const line of log.split('\n')) {
    if (!line.includes('attempt failed')) continue;
    const t = (JSON.parse(line) as { time?: unknown }).time;
    if (typeof t === 'number') return t;
  }
  throw new Error(`no "attempt failed" line in the agent log:\n${log}`);
}
