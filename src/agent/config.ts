/**
 * `agent.yaml`, validated apart from being applied. Relative paths are resolved against the
 * config file's directory, so a config works wherever the agent is started from.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SigilError } from '../errors.js';
import { parseWith } from '../protocol/messages.js';
import { parseDuration } from '../util/duration.js';

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v, 'config_invalid');
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const tokenJoin = z.strictObject({
  method: z.literal('token'),
  token: z.string().optional(),
  /** Safer than inline: a file only root can read. */
  token_file: z.string().optional(),
});

const outputSchema = z.strictObject({
  type: z.literal('identity'),
  path: z.string().min(1),
  /** Numeric owner/group for the written files (the workload's user). */
  uid: z.number().int().nonnegative().optional(),
  gid: z.number().int().nonnegative().optional(),
});

const configSchema = z.strictObject({
  issuer: z.string().url(),
  ca_pin: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'ca_pin must be sha256:<64 lowercase hex digits> as printed by `sigil server init`'),
  data_dir: z.string().min(1),
  ttl: duration.optional(),
  /** Fraction of the lifetime after which to renew (±10% jitter is added). */
  renew_fraction: z.number().gt(0.1).lt(0.95).optional(),
  join: tokenJoin,
  key_storage: z.literal('software').optional(),
  outputs: z.array(outputSchema).max(32).default([]),
  metrics: z
    .strictObject({
      /** host:port for a local Prometheus endpoint (loopback recommended). */
      listen: z.string().optional(),
      /** node_exporter textfile collector path. */
      textfile: z.string().optional(),
    })
    .optional(),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).optional(),
});

export type AgentConfigFile = z.infer<typeof configSchema>;

export interface AgentConfig {
  issuer: string;
  caPin: string;
  dataDir: string;
  ttlS: number | undefined;
  renewFraction: number;
  join: { method: 'token'; token: string };
  keyStorage: 'software';
  outputs: Array<{ type: 'identity'; path: string; uid?: number; gid?: number }>;
  metrics: { listen?: string; textfile?: string };
  logLevel: string | undefined;
  /** The config file, for messages. */
  source: string;
}

export function parseAgentConfig(text: string, source: string): AgentConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new SigilError('config_invalid', `${source}: YAML error: ${(e as Error).message.split('\n')[0]}`);
  }
  const c = parseWith(configSchema, raw, 'config_invalid', source);
  const base = dirname(resolve(source));
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  let token = c.join.token;
  if (c.join.token_file) {
    try {
      token = readFileSync(abs(c.join.token_file), 'utf8').trim();
    } catch (e) {
      throw new SigilError('config_invalid', `${source}: join.token_file ${c.join.token_file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    }
  }
  if (!token) throw new SigilError('config_invalid', `${source}: join.token or join.token_file is required for method token`);
  return {
    issuer: c.issuer,
    caPin: c.ca_pin,
    dataDir: abs(c.data_dir),
    ttlS: c.ttl,
    renewFraction: c.renew_fraction ?? 0.5,
    join: { method: 'token', token },
    keyStorage: 'software',
    outputs: c.outputs.map((o) => ({ ...o, path: abs(o.path) })),
    metrics: { ...(c.metrics?.listen ? { listen: c.metrics.listen } : {}), ...(c.metrics?.textfile ? { textfile: abs(c.metrics.textfile) } : {}) },
    logLevel: c.log_level,
    source,
  };
}

export function loadAgentConfig(path: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SigilError('config_invalid', `cannot read agent config ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseAgentConfig(text, path);
}
