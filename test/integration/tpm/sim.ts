/**
 * A throwaway swtpm for the TPM integration tests: its own state dir, its own local CA (never
 * /var/lib), EK certificates from swtpm_localca, SHA-256 PCR bank only, free loopback ports.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Tpm, type TpmKey } from '../../../src/tpm/tpm.js';
import { listensOn } from '../../helpers/port-owner.js';

const run = promisify(execFile);
const INSTALL = 'apt-get install -y swtpm swtpm-tools tpm2-tools (or: bash scripts/setup.sh)';

export interface Sim {
  port: number;
  dir: string;
  /** tpm2-tools TCTI string for this simulator. */
  tcti: string;
  /** Environment for tpm2-tools run against it. */
  env: NodeJS.ProcessEnv;
  caDir: string;
  stop(): Promise<void>;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function freePortPair(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const p = 20000 + 2 * Math.floor(Math.random() * 20000);
    if ((await portFree(p)) && (await portFree(p + 1))) return p;
  }
  throw new Error('no free port pair for swtpm');
}

function canConnect(where: number | string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = typeof where === 'string' ? connect({ path: where }) : connect({ host: '127.0.0.1', port: where });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** `unix: true` serves the data channel on a unix socket (tcti `swtpm:path=…`) instead of TCP. */
export async function startSim(opts: { unix?: boolean } = {}): Promise<Sim> {
  const dir = await mkdtemp(join(tmpdir(), 'sigil-swtpm-'));
  const state = join(dir, 'state');
  const caDir = join(dir, 'ca');
  await mkdir(state);
  await mkdir(caDir);
  const localcaConf = join(dir, 'swtpm-localca.conf');
  const localcaOpts = join(dir, 'swtpm-localca.options');
  const setupConf = join(dir, 'swtpm_setup.conf');
  await writeFile(
    localcaConf,
    `statedir = ${caDir}\nsigningkey = ${caDir}/signkey.pem\nissuercert = ${caDir}/issuercert.pem\ncertserial = ${caDir}/certserial\n`,
  );
  // swtpm_localca needs these three to make the platform certificate.
  await writeFile(localcaOpts, '--platform-manufacturer Sigil\n--platform-version 2.1\n--platform-model swtpm\n');
  await writeFile(
    setupConf,
    `create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = ${localcaConf}\ncreate_certs_tool_options = ${localcaOpts}\nactive_pcr_banks = sha256\n`,
  );
  try {
    await run(
      'swtpm_setup',
      ['--tpm2', '--tpmstate', state, '--create-ek-cert', '--create-platform-cert', '--config', setupConf],
      {
        env: { ...process.env, XDG_CONFIG_HOME: dir },
      },
    );
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`swtpm_setup not found: ${INSTALL}`);
    throw err;
  }

  let port = 0;
  let child: ChildProcess | undefined;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePortPair();
    const c = spawn(
      'swtpm',
      [
        'socket',
        '--tpm2',
        '--tpmstate',
        `dir=${state}`,
        '--server',
        opts.unix ? `type=unixio,path=${join(dir, 'tpm.sock')}` : `type=tcp,port=${port},bindaddr=127.0.0.1`,
        '--ctrl',
        `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
        '--flags',
        'not-need-init,startup-clear',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let exited = false;
    c.once('exit', () => (exited = true));
    c.once('error', () => (exited = true));
    // Ready when swtpm itself listens: if its bind failed because another process took a port
    // since freePortPair, that process would answer the connect (test/helpers/port-owner.ts).
    const ours = (): boolean =>
      !exited && c.pid !== undefined && listensOn(c.pid, port + 1) && (opts.unix || listensOn(c.pid, port));
    let ready = false;
    for (let i = 0; i < 100 && !exited && !ready; i++) {
      ready = (await canConnect(opts.unix ? join(dir, 'tpm.sock') : port)) && ours();
      if (!ready) await new Promise((r) => setTimeout(r, 50));
    }
    if (ready) child = c;
    else c.kill('SIGKILL');
  }
  if (!child) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`swtpm did not start: ${INSTALL}`);
  }
  const proc = child;
  const tcti = opts.unix ? `swtpm:path=${join(dir, 'tpm.sock')}` : `swtpm:host=127.0.0.1,port=${port}`;
  return {
    port,
    dir,
    tcti,
    caDir,
    env: { ...process.env, TPM2TOOLS_TCTI: tcti },
    async stop() {
      if (proc.exitCode === null) {
        const done = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Run a tpm2-tools command against the simulator; returns stdout. */
export async function tpm2(sim: Sim, tool: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(tool, args, { env: sim.env, cwd: sim.dir, maxBuffer: 1 << 24 });
    return stdout;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${tool} not found: ${INSTALL}`);
    throw err;
  }
}

/** A simulator, a connection to it, the SRK and a loaded AK: the setup of the attestation tests. */
export interface SimWithAk {
  sim: Sim;
  tpm: Tpm;
  srk: TpmKey;
  ak: TpmKey;
}

/** A simulator and a connection to it. */
export async function openSimTpm(): Promise<Pick<SimWithAk, 'sim' | 'tpm'>> {
  const sim = await startSim();
  return { sim, tpm: await Tpm.open(sim.tcti) };
}

export async function openSimWithAk(): Promise<SimWithAk> {
  const { sim, tpm } = await openSimTpm();
  const srk = await tpm.createSrk();
  const ak = await tpm.load(srk, await tpm.createAk(srk));
  return { sim, tpm, srk, ak };
}

/** Flush what was loaded, close and stop; tolerates a setup that failed half-way. */
export async function closeSim(s: Partial<SimWithAk>): Promise<void> {
  if (s.tpm) for (const k of [s.ak, s.srk]) if (k) await s.tpm.flush(k).catch(() => undefined);
  await s.tpm?.close();
  await s.sim?.stop();
}
