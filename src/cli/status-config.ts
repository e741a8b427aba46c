/**
 * What `sigil agent status --config FILE` needs of agent.yaml — where the state is, the TPM the
 * identity key is configured in, whether an mqtt transport is configured — read with the YAML
 * parser alone. `agent status` is a read of the state database (issue #19: ≤ 2× a bare Node
 * start); validating the whole file costs the schema library and every join method's config
 * schema, more than the status itself.
 *
 * Whatever it is not sure of gives undefined, and the caller runs the full loader
 * (agent/config.ts) — whose error, for a file that is not valid, is then the command's error. The
 * rules here are those of config.ts for these three settings, on the configs they are sure of:
 *   data_dir    a non-empty string, relative to the config file's directory
 *   tpm_tcti    none when key_storage is software or pkcs11, or when the join is a token join
 *               without key_storage (a token join never makes a TPM key); anything else (a tpm
 *               join, key_storage: tpm) → the full loader, which knows each method's TPM
 *   mqtt        `transports:` has an entry of type mqtt; `issuer: URL` alone is one https transport
 * Status does not check the rest of the file: `sigil agent run` and `sigil configure` do.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';

export interface StatusConfigFacts {
  dataDir: string;
  tpmTcti: string | undefined;
  mqtt: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The three facts, or undefined when the file is missing, not YAML, or not one of the sure cases above. */
export function readStatusFacts(configPath: string): StatusConfigFacts | undefined {
  let c: unknown;
  try {
    c = parseYaml(readFileSync(configPath, 'utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(c) || typeof c.data_dir !== 'string' || c.data_dir === '' || !isObject(c.join)) return undefined;
  const storage = c.key_storage;
  const noTpm = storage === 'software' || storage === 'pkcs11' || (storage === undefined && c.join.method === 'token');
  if (!noTpm) return undefined;
  let mqtt: boolean;
  if (c.transports !== undefined) {
    if (c.issuer !== undefined || !Array.isArray(c.transports)) return undefined;
    mqtt = c.transports.some((t) => isObject(t) && t.type === 'mqtt');
  } else if (typeof c.issuer === 'string') mqtt = false;
  else return undefined;
  const dataDir = isAbsolute(c.data_dir) ? c.data_dir : resolve(dirname(resolve(configPath)), c.data_dir);
  return { dataDir, tpmTcti: undefined, mqtt };
}
