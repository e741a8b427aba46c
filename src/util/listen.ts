import { SigilError } from '../errors.js';

/** `HOST:PORT` or `[v6]:PORT` → parts; `what` names the setting in the error (`--listen`, `metrics.listen`). */
export function parseListen(s: string, what = '--listen'): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535)
    throw new SigilError('config_invalid', `${what} must be HOST:PORT (e.g. 127.0.0.1:8443), got "${s}"`);
  return { host: (m[1] ?? m[2])!, port };
}
