/**
 * swtpm harness for tests, the quickstart and benches: manufactured software TPMs (EK certs
 * from a test-local swtpm_localca, never /var/lib), started on 127.0.0.1 with free ports,
 * rebootable with their state kept, and a simulated firmware boot with its event log.
 *
 *   const ca = await createLocalCa();                       // one manufacturer for a fleet
 *   const tpm = await createSwtpm({ localCa: ca });         // manufactured, not yet running
 *   await tpm.start();                                      // tpm.tcti, tpm.env.TPM2TOOLS_TCTI
 *   const { eventLog, pcrs } = await simulateBoot(tpm, { secureBoot: true });
 *   await tpm.reboot();                                     // PCRs reset, keys and NV kept
 *   await tpm.destroy(); ca.destroy();
 *
 * Facts this relies on (ARCHITECTURE "Facts measured"): swtpm 0.7.1 `swtpm_setup --tpm2
 * --create-ek-cert --create-platform-cert` makes an RSA-2048 EK cert at NV 0x01c00002, an ECC
 * P-384 one at 0x01c00016, a platform cert at 0x01c08000; the swtpm TCTI talks to port P and
 * its control channel on P+1, so both must be ours.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { listensOn } from './port-owner.js';
import { EV, eventDigest, eventTypeValue, isPcrBank, type PcrBank } from '../../src/tpm/eventlog/index.js';
import { simulatedBootLog, type BootSpec } from './firmware-boot.js';
import { createLocalCa, withCa, type SharedLocalCa } from './swtpm-ca.js';

export { DEFAULT_BOOT, bootEvents, simulatedBootLog, type BootSpec } from './firmware-boot.js';
export { createLocalCa, type SharedLocalCa } from './swtpm-ca.js';

export const INSTALL_HINT = 'run scripts/setup.sh (apt-get install swtpm swtpm-tools tpm2-tools)';

/** Full path of a system tool, or an Error naming the command that installs it (never a skip). */
export function requireTool(name: string, searchPath = process.env.PATH ?? ''): string {
  for (const dir of searchPath.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not in this directory
    }
  }
  throw new Error(`${name} not found: ${INSTALL_HINT}`);
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const p = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.on('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code: code ?? -1, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// swtpm instances

export interface SwtpmOptions {
  /** Create EK (RSA 2048 + ECC P-384) and platform certificates. Default true. */
  ekCerts?: boolean;
  /** Active PCR banks, comma-separated like swtpm_setup's --pcr-banks. Default 'sha256'. */
  pcrBanks?: string;
  /** Use this directory (kept state is reused: a manufactured TPM is not re-manufactured). */
  dir?: string;
  /** Manufacturer CA to share; default: a private CA inside the TPM's directory. */
  localCa?: SharedLocalCa;
  /** PATH used to find swtpm, swtpm_setup, swtpm_localca (tests of the missing-binary message). */
  searchPath?: string;
}

export interface SwtpmInstance {
  readonly dir: string;
  readonly stateDir: string;
  /** The manufacturer CA, when EK certs were made. */
  readonly ca: SharedLocalCa | undefined;
  /** `[root, issuer]` PEM paths, when EK certs were made. */
  readonly caFiles: readonly [string, string] | undefined;
  readonly pcrBanks: readonly PcrBank[];
  /** Data port (0 before the first start). The control port is `port + 1`. */
  readonly port: number;
  readonly ctrlPort: number;
  /** `swtpm:host=127.0.0.1,port=P` for tpm2-tools / TSS2 TCTI loaders. */
  readonly tcti: string;
  readonly env: { TPM2TOOLS_TCTI: string };
  readonly running: boolean;
  readonly pid: number | undefined;
  start(): Promise<void>;
  /** SIGTERM (then SIGKILL after 5 s); state is on disk, so a later start() keeps keys and NV. */
  stop(): Promise<void>;
  /** stop() + start(): TPM2_Startup(CLEAR) resets PCRs, keeps persistent keys. Same port when free. */
  reboot(): Promise<void>;
  /** stop() and remove the directory (and the private CA, if any). */
  destroy(): Promise<void>;
  /** swtpm's own log file contents (for failure messages). */
  log(): string;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function trackChild(p: ChildProcess): void {
  live.add(p);
  p.once('exit', () => live.delete(p));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // A crashed test must not leave TPMs listening behind it.
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

function parseBanks(spec: string): PcrBank[] {
  const banks = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (banks.length === 0) throw new TypeError('pcrBanks is empty');
  for (const b of banks)
    if (!isPcrBank(b)) throw new TypeError(`unsupported PCR bank "${b}" (sha1, sha256, sha384, sha512)`);
  return banks as PcrBank[];
}

/** Manufacture a TPM (swtpm_setup) in a temp dir; call start() to run it. */
export async function createSwtpm(opts: SwtpmOptions = {}): Promise<SwtpmInstance> {
  const searchPath = opts.searchPath ?? process.env.PATH ?? '';
  const bins = {
    swtpm: requireTool('swtpm', searchPath),
    swtpmSetup: requireTool('swtpm_setup', searchPath),
    localca: opts.ekCerts === false ? undefined : requireTool('swtpm_localca', searchPath),
  };
  const ekCerts = opts.ekCerts ?? true;
  const pcrBanks = parseBanks(opts.pcrBanks ?? 'sha256');
  const dir = opts.dir ? resolve(opts.dir) : mkdtempSync(join(tmpdir(), 'sigil-swtpm-'));
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });

  let ca: SharedLocalCa | undefined;
  if (ekCerts) ca = opts.localCa ?? (await createLocalCa({ dir: join(dir, 'ca') }));

  if (!existsSync(join(stateDir, 'tpm2-00.permall'))) {
    const setupConf = join(dir, 'swtpm_setup.conf');
    const lines = [`active_pcr_banks = ${pcrBanks.join(',')}`];
    if (ca)
      lines.unshift(
        `create_certs_tool = ${bins.localca}`,
        `create_certs_tool_config = ${ca.configFile}`,
        `create_certs_tool_options = ${ca.optionsFile}`,
      );
    writeFileSync(setupConf, lines.join('\n') + '\n');
    const logFile = join(dir, 'swtpm_setup.log');
    const args = [
      '--tpm2',
      '--tpmstate',
      stateDir,
      '--pcr-banks',
      pcrBanks.join(','),
      '--config',
      setupConf,
      '--logfile',
      logFile,
    ];
    args.push(...(ekCerts ? ['--create-ek-cert', '--create-platform-cert'] : ['--createek']));
    const manufacture = async (): Promise<void> => {
      const r = await run(bins.swtpmSetup, args, { env: { ...process.env, PATH: searchPath } });
      if (r.code !== 0) {
        const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
        throw new Error(
          `swtpm_setup failed (exit ${r.code}): ${(r.stderr + log).trim().split('\n').slice(-8).join('\n')}`,
        );
      }
    };
    if (ca) await withCa(ca, manufacture);
    else await manufacture();
  }
  return new Swtpm(dir, stateDir, ca, ca !== undefined && ca !== opts.localCa, pcrBanks, bins.swtpm);
}

/** createSwtpm + start. */
export async function startSwtpm(opts: SwtpmOptions = {}): Promise<SwtpmInstance> {
  const tpm = await createSwtpm(opts);
  await tpm.start();
  return tpm;
}

/** Two adjacent free TCP ports on 127.0.0.1 (data P, control P+1). */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await listenOnce(0);
    if (port >= 65535) continue;
    if ((await listenOnce(port + 1).catch(() => 0)) === port + 1) return port;
  }
  throw new Error('no two adjacent free ports on 127.0.0.1');
}

function listenOnce(port: number): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolvePort(p));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

class Swtpm implements SwtpmInstance {
  private proc: ChildProcess | undefined;
  private stderr = '';
  private currentPort = 0;
  /** Set by simulateBoot; cleared on start, since startup-clear resets the PCRs. */
  bootSimulated = false;

  constructor(
    readonly dir: string,
    readonly stateDir: string,
    readonly ca: SharedLocalCa | undefined,
    private readonly ownsCa: boolean,
    readonly pcrBanks: readonly PcrBank[],
    private readonly swtpmBin: string,
  ) {}

  get caFiles(): readonly [string, string] | undefined {
    return this.ca?.caFiles;
  }
  get port(): number {
    return this.currentPort;
  }
  get ctrlPort(): number {
    return this.currentPort === 0 ? 0 : this.currentPort + 1;
  }
  get tcti(): string {
    return `swtpm:host=127.0.0.1,port=${this.currentPort}`;
  }
  get env(): { TPM2TOOLS_TCTI: string } {
    return { TPM2TOOLS_TCTI: this.tcti };
  }
  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }
  get pid(): number | undefined {
    return this.running ? this.proc?.pid : undefined;
  }

  log(): string {
    const f = join(this.dir, 'swtpm.log');
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  }

  async start(): Promise<void> {
    if (this.running) return;
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < 6; attempt++) {
      // Reuse the previous port after a reboot so TCTI strings handed out stay valid.
      const port = attempt === 0 && this.currentPort !== 0 ? this.currentPort : await freePortPair();
      try {
        await this.spawnOn(port);
        this.currentPort = port;
        this.bootSimulated = false;
        return;
      } catch (e) {
        lastError = e as Error;
        if (!/in use|bind/i.test(lastError.message)) throw lastError;
      }
    }
    throw lastError ?? new Error('swtpm did not start');
  }

  private async spawnOn(port: number): Promise<void> {
    const args = [
      'socket',
      '--tpm2',
      '--tpmstate',
      `dir=${this.stateDir}`,
      '--server',
      `type=tcp,port=${port},bindaddr=127.0.0.1`,
      '--ctrl',
      `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
      '--flags',
      'not-need-init,startup-clear',
      '--log',
      `file=${join(this.dir, 'swtpm.log')}`,
    ];
    this.stderr = '';
    const p = spawn(this.swtpmBin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    trackChild(p);
    p.stderr?.on('data', (d: Buffer) => {
      if (this.stderr.length < 8192) this.stderr += d.toString();
    });
    // 'close' (not 'exit') so the stderr explaining a failed bind has been read.
    let closed = false;
    p.once('close', () => (closed = true));
    const alive = (): boolean => !closed && p.exitCode === null && p.signalCode === null;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (closed) {
        const why = (this.stderr + this.log()).trim().split('\n').slice(-5).join(' | ');
        throw new Error(`swtpm exited on port ${port}: ${why || `exit ${p.exitCode}`}`);
      }
      // Someone else could own the port if our bind failed: connectable, and swtpm's own sockets.
      if (alive() && (await canConnect(port)) && listensOn(p.pid!, port) && listensOn(p.pid!, port + 1)) {
        this.proc = p;
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    p.kill('SIGKILL');
    throw new Error(`swtpm did not accept connections on 127.0.0.1:${port} within 15 s`);
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  async reboot(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
    if (this.ownsCa) this.ca?.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// tpm2-tools against an instance, and the simulated boot

/** Run a tpm2-tools command against `tpm` (TPM2TOOLS_TCTI set); rejects on a non-zero exit. */
export async function tpm2Tool(
  tpm: SwtpmInstance,
  tool: string,
  args: string[],
): Promise<{ stdout: string; stderr: string }> {
  const bin = requireTool(tool);
  if (!tpm.running) throw new Error(`${tool}: the swtpm is not running (call start())`);
  const r = await run(bin, args, { env: { ...process.env, ...tpm.env } });
  if (r.code !== 0) throw new Error(`${tool} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** PCR values as tpm2_pcrread reports them. */
export async function readPcrs(
  tpm: SwtpmInstance,
  bank: PcrBank,
  pcrs: readonly number[],
): Promise<Map<number, Buffer>> {
  const { stdout } = await tpm2Tool(tpm, 'tpm2_pcrread', [`${bank}:${pcrs.join(',')}`]);
  const out = new Map<number, Buffer>();
  for (const m of stdout.matchAll(/^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$/gm))
    out.set(Number(m[1]), Buffer.from(m[2]!, 'hex'));
  return out;
}

export interface SimulatedBoot {
  /** The crypto-agile TCG event log (binary_bios_measurements) of this boot. */
  eventLog: Buffer;
  /** Expected PCR values in the TPM's first bank (sha256 by default), computed in software. */
  pcrs: Map<number, Buffer>;
  pcrsByBank: Map<PcrBank, Map<number, Buffer>>;
}

/**
 * Boot `tpm` as firmware would: extend every measurement of `boot` with tpm2_pcrextend and return
 * the matching event log and the PCR values computed in software. Once per start: the TPM must
 * be freshly (re)started, since PCRs only reset on TPM2_Startup(CLEAR).
 */
export async function simulateBoot(tpm: SwtpmInstance, boot: BootSpec = {}): Promise<SimulatedBoot> {
  if (!(tpm instanceof Swtpm)) throw new TypeError('simulateBoot needs an instance from createSwtpm()');
  if (!tpm.running) throw new Error('simulateBoot: the swtpm is not running (call start())');
  if (tpm.bootSimulated)
    throw new Error('simulateBoot: this TPM already booted since its last start; call reboot() first');
  const { eventLog, pcrsByBank, events } = simulatedBootLog(boot, tpm.pcrBanks);
  const extends_ = events
    .filter((ev) => eventTypeValue(ev.type) !== EV.EV_NO_ACTION)
    .map((ev) => `${ev.pcr}:${tpm.pcrBanks.map((b) => `${b}=${eventDigest(ev, b).toString('hex')}`).join(',')}`);
  tpm.bootSimulated = true;
  // tpm2_pcrextend extends its arguments in order; a few per call keeps command lines short.
  for (let i = 0; i < extends_.length; i += 16) await tpm2Tool(tpm, 'tpm2_pcrextend', extends_.slice(i, i + 16));
  return { eventLog, pcrs: pcrsByBank.get(tpm.pcrBanks[0]!)!, pcrsByBank };
}
