/**
 * The files the agent reads secrets from, and who else can read them. A secret readable by every
 * local user is every local user's: an unused join token lets one of them join as the bot first
 * (single use: the machine is then refused, `token_reused`), a PIN file or a device key lets them
 * use the machine's hardware identity. Group read is left alone: the package's layout gives the
 * agent's group read on purpose (`/etc/sigil` root:sigil 0750, configs 0640). World write is
 * worse than read: whoever can write the token file chooses which bot the machine joins as.
 *
 * Why doctor looks: a token written the obvious way (`echo TOKEN > /etc/sigil/token`) is 0644
 * under the default umask, and neither `sigil agent configure --token-file` nor the agent says so.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { AgentConfig } from '../../agent/config.js';
import { lstatOrUndefined, octal, sh } from '../file-modes.js';
import { fail, ok, warn, type Check, type CheckOutcome, type CheckStatus } from '../types.js';
import type { AgentDoctorContext } from './context.js';

/** How bad it is for others to read this file (`warn`: a secret shared by a fleet, or a short-lived bearer token). */
export interface SecretFile {
  what: string;
  file: string;
  exposed: CheckStatus;
}

/** Keys of a join method's block that name a file holding a secret (paths already resolved by the config loader). */
const JOIN_SECRET_KEYS: Record<string, { what: string; exposed: CheckStatus }> = {
  key: { what: 'device key', exposed: 'fail' },
  pin_file: { what: 'PIN file', exposed: 'fail' },
  binding_key: { what: 'binding key', exposed: 'fail' },
  token_file: { what: 'OIDC token file', exposed: 'warn' },
};

/** `join.token_file` as written in agent.yaml (the loaded config keeps only the token). */
function rawTokenFile(configPath: string): string | undefined {
  try {
    const raw = parseYaml(fs.readFileSync(configPath, 'utf8')) as { join?: { token_file?: unknown } } | null;
    const f = raw?.join?.token_file;
    return typeof f === 'string' && f ? path.resolve(path.dirname(configPath), f) : undefined;
  } catch {
    return undefined; // the config check already reported an unreadable config
  }
}

/**
 * Every secret file of the config. `tokenExposed` is how bad a readable join token is: `fail`
 * while the next join will spend it, `warn` once spent (harmless, until the next one is written
 * into the same file with the same mode).
 */
export function secretFiles(cfg: AgentConfig, configPath: string, tokenExposed: CheckStatus): SecretFile[] {
  const out: SecretFile[] = [];
  if (!('settings' in cfg.join)) {
    const file = rawTokenFile(configPath);
    out.push(
      file
        ? { what: 'join token file', file, exposed: tokenExposed }
        : { what: 'agent.yaml holding join.token', file: path.resolve(configPath), exposed: tokenExposed },
    );
  } else {
    const { settings } = cfg.join;
    for (const [key, kind] of Object.entries(JOIN_SECRET_KEYS)) {
      const v = settings[key];
      // URIs (pkcs11:…, tpm:…) name no file.
      if (typeof v === 'string' && path.isAbsolute(v))
        out.push({ what: `join.${cfg.join.method}.${key} (${kind.what})`, file: v, exposed: kind.exposed });
    }
  }
  for (const t of cfg.transports) {
    const b = t.type === 'mqtt' ? t.bootstrap : undefined;
    if (!b) continue;
    // The bootstrap password is every device's (docs/mqtt.md): exposing it costs little; a bootstrap key is this device's.
    if ('passwordFile' in b) out.push({ what: 'MQTT bootstrap password', file: b.passwordFile, exposed: 'warn' });
    else out.push({ what: 'MQTT bootstrap key', file: b.keyFile, exposed: 'fail' });
  }
  if (cfg.pkcs11?.pinFile) out.push({ what: 'PKCS#11 PIN file', file: cfg.pkcs11.pinFile, exposed: 'fail' });
  return out;
}

/** One file: world-writable is always a failure; world-readable is the file's `exposed`. */
export function judgeSecretFile(s: SecretFile): CheckOutcome | undefined {
  const st = lstatOrUndefined(s.file);
  if (!st || !st.isFile()) return undefined; // a missing file is the config loader's or the join's finding
  const mode = octal(st.mode);
  if ((st.mode & 0o002) !== 0)
    return fail(
      `${s.what} ${s.file} is writable by every local user (mode ${mode}): they choose what the agent presents`,
      `chmod go-w,o-r ${sh(s.file)}`,
    );
  if ((st.mode & 0o004) !== 0) {
    const detail = `${s.what} ${s.file} is readable by every local user (mode ${mode})`;
    const fix = `chmod o-r ${sh(s.file)} (e.g. chmod 0600, or 0640 with the agent's group)`;
    return s.exposed === 'fail' ? fail(detail, fix) : warn(detail, fix);
  }
  return undefined;
}

export const secretsCheck: Check<AgentDoctorContext> = {
  name: 'secrets',
  async run(ctx) {
    // An unreadable agent.db is the data_dir check's finding; here it only means "not joined".
    const id = await ctx.state().then(
      (st) => st?.getIdentity(),
      () => undefined,
    );
    const tokenExposed: CheckStatus = id && id.notAfter > ctx.now() ? 'warn' : 'fail';
    const files = secretFiles(ctx.cfg, ctx.configPath, tokenExposed);
    const findings = files.map(judgeSecretFile).filter((f): f is CheckOutcome => f !== undefined);
    const worst = findings.find((f) => f.status === 'fail') ?? findings[0];
    if (worst)
      return findings.length > 1 ? { ...worst, detail: `${worst.detail} (and ${findings.length - 1} more)` } : worst;
    return ok(
      files.length
        ? `${files.map((f) => f.what).join(', ')}: not readable by others`
        : 'no secret files named in the config',
    );
  },
};
