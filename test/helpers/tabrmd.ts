/**
 * tpm2-abrmd (the TPM2 access broker and resource manager) in front of a swtpm, on a private
 * session D-Bus — what OpenSSL's tpm2 provider needs for a TLS handshake with a TPM key
 * (ARCHITECTURE "Facts": directly on swtpm it runs out of object slots, TPM_RC 0x902).
 *
 * While it runs, tabrmd holds swtpm's only connection: everything else must use
 * `tabrmd:bus_type=session` with the returned environment.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from './swtpm.js';

const INSTALL = 'apt-get install -y tpm2-abrmd libtss2-tcti-tabrmd0 dbus';

export interface Tabrmd {
  /** DBUS_SESSION_BUS_ADDRESS and TPM2OPENSSL_TCTI / TPM2TOOLS_TCTI for the broker. */
  env: NodeJS.ProcessEnv;
  tcti: string;
  stop(): Promise<void>;
}

function tool(name: string): string {
  try {
    return requireTool(name, `${process.env.PATH ?? ''}:/usr/sbin:/sbin`);
  } catch {
    throw new Error(`${name} not found: ${INSTALL}`);
  }
}

function kill(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), 3000);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

/** Start dbus-daemon --session and tpm2-abrmd --session for the swtpm at `swtpmTcti`. */
export async function startTabrmd(swtpmTcti: string): Promise<Tabrmd> {
  const dbusBin = tool('dbus-daemon');
  const abrmdBin = tool('tpm2-abrmd');
  if (
    !existsSync('/usr/lib/x86_64-linux-gnu/libtss2-tcti-tabrmd.so.0') &&
    !existsSync('/usr/lib/aarch64-linux-gnu/libtss2-tcti-tabrmd.so.0')
  ) {
    throw new Error(`libtss2-tcti-tabrmd.so.0 not found: ${INSTALL}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'sigil-tabrmd-'));
  const address = `unix:path=${join(dir, 'bus')}`;
  const dbus = spawn(dbusBin, ['--session', '--nofork', '--nopidfile', `--address=${address}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // Ready once the socket accepts a connection: the file exists at bind(2), before listen(2), and
  // a tpm2-abrmd started in between fails "Could not connect: Connection refused" (seen in CI).
  const accepts = (): Promise<boolean> =>
    new Promise((resolve) => {
      const c = createConnection({ path: join(dir, 'bus') });
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
  let ready = false;
  for (let i = 0; i < 200 && !(ready = await accepts()); i++) await new Promise((r) => setTimeout(r, 25));
  if (!ready) {
    await kill(dbus);
    rmSync(dir, { recursive: true, force: true });
    throw new Error('dbus-daemon --session did not accept connections on its socket');
  }
  const env = {
    ...process.env,
    DBUS_SESSION_BUS_ADDRESS: address,
    TPM2OPENSSL_TCTI: 'tabrmd:bus_type=session',
    TPM2TOOLS_TCTI: 'tabrmd:bus_type=session',
  };
  let log = '';
  const abrmd = spawn(abrmdBin, ['--session', '--allow-root', '--flush-all', `--tcti=${swtpmTcti}`], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  abrmd.stdout.on('data', (d: Buffer) => (log += d.toString()));
  abrmd.stderr.on('data', (d: Buffer) => (log += d.toString()));
  // Ready once its name is on the bus: poll with tpm2_getrandom through it.
  const getrandom = requireTool('tpm2_getrandom');
  for (let i = 0; ; i++) {
    if (abrmd.exitCode !== null) break;
    const ok = await new Promise<boolean>((resolve) => {
      const p = spawn(getrandom, ['4', '--hex'], { env, stdio: 'ignore' });
      p.on('close', (code) => resolve(code === 0));
      p.on('error', () => resolve(false));
    });
    if (ok) break;
    if (i > 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (abrmd.exitCode !== null) {
    await kill(dbus);
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`tpm2-abrmd exited: ${log.trim().split('\n').slice(-5).join(' | ')}`);
  }
  return {
    env,
    tcti: 'tabrmd:bus_type=session',
    async stop() {
      await kill(abrmd);
      await kill(dbus);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
