/**
 * Open a transport from a tpm2-tools TCTI string:
 *
 *   swtpm:host=H,port=P | swtpm:path=/sock  → the pure-TypeScript socket transport
 *                                             (the TCTI loader instead when SIGIL_TPM_NATIVE=1)
 *   device:/dev/tpmrm0 | device             → the character device
 *   mssim:… | tabrmd:… | anything else      → libtss2-tctildr (native/tss2-tctildr.ts, through koffi)
 */
import { SigilError } from '../../errors.js';
import { DeviceTransport } from './device.js';
import { SocketTransport } from './socket.js';
import type { SocketAddress } from './socket.js';
import { TctiTransport } from './tcti.js';
import type { TpmTransport } from './transport.js';

export interface OpenOptions {
  /** Force the TCTI loader even for swtpm (default: SIGIL_TPM_NATIVE=1 in the environment). */
  native?: boolean;
  /** Per-command timeout of the socket and TCTI transports. */
  timeoutMs?: number;
}

/** Parse "k=v,k=v" (tpm2-tss TCTI configuration syntax). */
function parseConf(conf: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of conf.split(',')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    if (eq < 0) m.set(part.trim(), '');
    else m.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return m;
}

export function parseSwtpmConf(conf: string): SocketAddress {
  const m = parseConf(conf);
  for (const k of m.keys()) {
    if (k !== 'host' && k !== 'port' && k !== 'path')
      throw new SigilError('config_invalid', `swtpm TCTI: unknown option "${k}"`);
  }
  const path = m.get('path');
  if (path) return { path };
  const port = Number(m.get('port') ?? '2321');
  if (!Number.isInteger(port) || port <= 0 || port > 65535)
    throw new SigilError('config_invalid', `swtpm TCTI: bad port "${m.get('port')}"`);
  return { host: m.get('host') || 'localhost', port };
}

export async function openTransport(tcti: string, opts: OpenOptions = {}): Promise<TpmTransport> {
  const colon = tcti.indexOf(':');
  const name = (colon < 0 ? tcti : tcti.slice(0, colon)).trim();
  const conf = colon < 0 ? '' : tcti.slice(colon + 1);
  const native = opts.native ?? process.env.SIGIL_TPM_NATIVE === '1';
  if (!name) throw new SigilError('config_invalid', 'empty TPM TCTI string');
  if (name === 'swtpm' && !native) {
    return SocketTransport.connect(
      parseSwtpmConf(conf),
      opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {},
    );
  }
  if (name === 'device' && !native) return DeviceTransport.open(conf || '/dev/tpmrm0');
  return TctiTransport.open(tcti, opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {});
}
