/**
 * The agent half of the configured join method, built from the registry (join/agent-methods.ts):
 * the method's evidence half plus its hooks (registry.ts AgentJoinMethod) — a fingerprint of
 * the single-use credential if the method has one, so that after an expiry the agent can tell,
 * without asking the issuer, that its token is spent and a person must act
 * (`reattest_required`); and, for methods that need them, what to do with each new key, after a
 * join, and at a renewal (tpm). The agent core never names a method.
 *
 * Methods that can re-attest (tpm, x509: canReattest = true) have no such credential; after an
 * expiry the agent simply joins again with fresh evidence, over whichever transport works.
 */
import { SigilError } from '../errors.js';
import { AGENT_JOIN_METHODS } from '../join/agent-methods.js';
import type { AgentJoinMethod, AgentJoinMethodEntry, LoadedAgentJoinMethod } from '../join/registry.js';
import type { TpmAccesses } from '../keystore/tpm-access.js';
import { parseWith } from '../protocol/messages.js';
import type { AgentConfig } from './config.js';

export type { AgentJoinMethod, LoadedAgentJoinMethod };

/** Setting under which the credential of the last successful join is remembered. */
export const USED_CREDENTIAL_SETTING = 'join.used_credential';

/**
 * The configured method's entry from `registry` (default: every method the agent knows), with
 * its code loaded: only this method's, so that a token agent never loads the TPM stack, PKCS#11
 * or PKCS#7 of the others (issue #19).
 */
export async function loadJoinMethod(
  cfg: AgentConfig,
  registry: ReadonlyArray<AgentJoinMethodEntry<unknown>> = AGENT_JOIN_METHODS,
): Promise<LoadedAgentJoinMethod> {
  const entry = registry.find((e) => e.descriptor.name === cfg.join.method);
  if (!entry)
    throw new SigilError(
      'config_invalid',
      `${cfg.source}: join.method must be one of ${registry.map((e) => e.descriptor.name).join(', ')} (got ${JSON.stringify(cfg.join.method)})`,
    );
  return { ...entry, ...(await entry.load()) };
}

/**
 * Build the configured method from its loaded entry ({@link loadJoinMethod}). `tpm`: the agent's
 * TPMs, which the method shares with its identity keys.
 */
export function joinMethodFor(cfg: AgentConfig, loaded: LoadedAgentJoinMethod, tpm: TpmAccesses): AgentJoinMethod {
  const j = cfg.join;
  if (loaded.descriptor.name !== j.method)
    throw new TypeError(`joinMethodFor: loaded ${loaded.descriptor.name}, configured ${j.method}`);
  const where = `${cfg.source}: join.${j.method}`;
  // agent.yaml keeps the token join flat (`join: { method: token, token }`).
  const settings = parseWith(
    loaded.configSchema(),
    'token' in j ? { token: j.token } : j.settings,
    'config_invalid',
    where,
  );
  return loaded.create(settings, { where, dataDir: cfg.dataDir, keyStorage: cfg.keyStorage, tpm });
}

/**
 * Load and build the configured method in one step, to check or inspect the configuration
 * (`agent status`, doctor, tests). `tpm` defaults to a set of TPMs of its own.
 */
export async function buildJoinMethod(
  cfg: AgentConfig,
  registry: ReadonlyArray<AgentJoinMethodEntry<unknown>> = AGENT_JOIN_METHODS,
  tpm?: TpmAccesses,
): Promise<AgentJoinMethod> {
  const loaded = await loadJoinMethod(cfg, registry);
  return joinMethodFor(cfg, loaded, tpm ?? new (await import('../keystore/tpm-access.js')).TpmAccesses());
}

/** The admin command that gives a token-joined agent a way back after its identity expired. */
export function reattestHint(methodName: string, bot: string, configPath: string, revoked = false): string {
  const why = revoked
    ? 'the intermediate CA that issued this identity was revoked at the issuer (it can never renew)'
    : 'the identity expired';
  return `${why} and the ${methodName} join method cannot re-attest by itself; create a new token with \`sigil ctl --data-dir <issuer-data-dir> token create --bot ${bot}\`, put it in join.token (or join.token_file) of ${configPath} and restart the agent (the running daemon reads its config only at start: \`systemctl restart sigil-agent\`, or \`sigil agent run --once --config ${configPath}\` when no daemon runs)`;
}
