/**
 * The first thing `sigil agent run` does: put the cached identity back on disk, before the
 * heavy parts of the agent are even loaded (schema validation, the protocol, MQTT.js, the
 * logger — together several hundred milliseconds of module loading). An agent restarted while
 * its uplink is down thus serves its workloads within ~100–300 ms of process start
 * (ARCHITECTURE principle 5; measured in test/e2e/crash-safety.test.ts).
 *
 * It applies only two settings of agent.yaml, `data_dir` and `outputs`, and validates exactly
 * those (same rules as config.ts); if anything about them is doubtful it does nothing and
 * leaves the decision to the full configuration load that follows. It imports only what it
 * uses: the YAML parser, the SQLite state and the output writer.
 */
import { readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { identityOutput } from './outputs/identity.js';
import { openAgentState, type AgentState, type Identity } from './state/index.js';

export interface ServePlan {
  dataDir: string;
  outputs: Array<{ path: string; uid?: number; gid?: number }>;
}

/** outputs/config.ts CREDENTIAL_OUTPUT_TYPES, repeated so this file does not load zod. */
const CREDENTIAL_OUTPUT_TYPES: ReadonlySet<string> = new Set(['ssh_user', 'ssh_host', 'database', 'kubernetes', 'jwt']);

const isId = (v: unknown): v is number | undefined => v === undefined || (Number.isInteger(v) && (v as number) >= 0);

/** `data_dir` and `outputs` from agent.yaml, or undefined if they are missing or not valid. */
export function readServePlan(configPath: string): ServePlan | undefined {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(configPath, 'utf8'));
  } catch {
    return undefined;
  }
  const c = raw as { data_dir?: unknown; outputs?: unknown } | null;
  if (!c || typeof c !== 'object' || typeof c.data_dir !== 'string' || c.data_dir === '') return undefined;
  const outputs = c.outputs ?? [];
  if (!Array.isArray(outputs) || outputs.length > 32) return undefined;
  const base = dirname(resolve(configPath));
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  const plan: ServePlan = { dataDir: abs(c.data_dir), outputs: [] };
  for (const o of outputs as Array<Record<string, unknown>>) {
    // Credential outputs (SSH, database, Kubernetes, JWT) are files that stay valid on their
    // own across restarts; the full agent validates and renews them (agent/credentials.ts).
    if (o && typeof o === 'object' && CREDENTIAL_OUTPUT_TYPES.has(o.type as string)) continue;
    if (
      !o ||
      typeof o !== 'object' ||
      o.type !== 'identity' ||
      typeof o.path !== 'string' ||
      o.path === '' ||
      !isId(o.uid) ||
      !isId(o.gid)
    )
      return undefined;
    if (Object.keys(o).some((k) => !['type', 'path', 'uid', 'gid'].includes(k))) return undefined;
    plan.outputs.push({
      path: abs(o.path),
      ...(o.uid !== undefined ? { uid: o.uid as number } : {}),
      ...(o.gid !== undefined ? { gid: o.gid as number } : {}),
    });
  }
  return plan;
}

/** Temp files of an output write that a crash interrupted (util/atomic-file.ts names them so). */
const LEFTOVER_RE = /^\.(svid\.pem|svid\.key|bundle\.pem)\.tmp-[0-9a-f]{12}$/;

/** Remove what a write killed half-way left behind (a stale key among them). Best effort. */
function removeLeftovers(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!LEFTOVER_RE.test(n)) continue;
    try {
      unlinkSync(join(dir, n));
    } catch {
      // gone already, or not ours to remove
    }
  }
}

/**
 * Open the agent state and write its current identity to the planned outputs. Returns the open
 * state for the agent to keep using (or undefined if the state could not be opened here; the
 * agent then opens it itself and reports the problem properly).
 */
export function serveCachedIdentity(
  plan: ServePlan,
): { state: AgentState; identity: Identity | undefined } | undefined {
  let state: AgentState;
  try {
    state = openAgentState(plan.dataDir);
  } catch {
    return undefined;
  }
  try {
    const id = state.getIdentity();
    if (id && plan.outputs.length > 0) {
      const ref = JSON.parse(id.keyRef) as { storage?: string; pkcs8Pem?: string };
      const material = {
        certPem: id.chainPem.join(''),
        ...(ref.storage === 'software' && typeof ref.pkcs8Pem === 'string' ? { keyPem: ref.pkcs8Pem } : {}),
        bundlePem: (state.getBundle()?.rootsPem ?? []).join(''),
      };
      for (const o of plan.outputs) removeLeftovers(o.path);
      for (const o of plan.outputs)
        identityOutput(o.path, {
          ...(o.uid !== undefined ? { uid: o.uid } : {}),
          ...(o.gid !== undefined ? { gid: o.gid } : {}),
        }).write(material);
    }
    return { state, identity: id };
  } catch {
    // A refused output path or a damaged row: the full agent run reports it with its code.
    return { state, identity: undefined };
  }
}
