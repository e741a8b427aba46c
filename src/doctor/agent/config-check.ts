/**
 * The config parses, exactly as `sigil agent run` parses it (agent/config.ts), and the join
 * method's own block builds (the agent validates it only when it builds the method). The
 * first error is named with its key path; every other agent check needs a valid config, so a
 * failure here is reported alone.
 */
import type { AgentConfig } from '../../agent/config.js';
import { toSigilError } from '../../errors.js';
import { fail, ok, type CheckResult } from '../types.js';

export type ConfigLoad = { cfg: AgentConfig; result: CheckResult } | { cfg: undefined; result: CheckResult };

export async function loadConfigCheck(configPath: string): Promise<ConfigLoad> {
  const result = (o: ReturnType<typeof ok>): CheckResult => ({
    name: 'config',
    status: o.status,
    detail: o.detail,
    fix: o.fix ?? null,
  });
  let cfg: AgentConfig;
  try {
    const { loadAgentConfig } = await import('../../agent/config.js');
    cfg = loadAgentConfig(configPath);
  } catch (e) {
    const err = toSigilError(e);
    const msg = err.code === 'internal' ? `internal: ${(e as Error)?.message}` : `${err.code}: ${err.message}`;
    // "agent.yaml: transports.0.url: …" → the key to fix is the part after the file name.
    const key = /^[^:]+: ([A-Za-z_][\w.]*): /.exec(err.message)?.[1];
    return {
      cfg: undefined,
      result: result(
        fail(
          msg,
          key ? `fix ${key} in ${configPath} (docs/configuration.md)` : `fix ${configPath} (docs/configuration.md)`,
        ),
      ),
    };
  }
  try {
    const { buildJoinMethod } = await import('../../agent/join-method.js');
    await buildJoinMethod(cfg);
  } catch (e) {
    const err = toSigilError(e);
    return {
      cfg: undefined,
      result: result(
        fail(
          `${err.code}: join.${cfg.join.method}: ${err.code === 'internal' ? (e as Error)?.message : err.message}`,
          `fix join.${cfg.join.method} in ${configPath} (docs/configuration.md)`,
        ),
      ),
    };
  }
  const transports = cfg.transports.map((t) => t.type).join(', ');
  return {
    cfg,
    result: result(
      ok(
        `${configPath}: ${cfg.join.method} join, key_storage ${cfg.keyStorage}, transports ${transports}, ${cfg.outputs.length + cfg.credentialOutputs.length} outputs`,
      ),
    ),
  };
}
