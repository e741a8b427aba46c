/**
 * `sigil doctor --config agent.yaml`: the agent's checks, in the order an operator reads them —
 * config, local state (data dir, outputs, TPM), the way to the issuer (each transport, its
 * broker, the clock), and the identity it all produced.
 */
import { runChecks } from '../runner.js';
import type { Check, DoctorReport } from '../types.js';
import { brokerCheck } from './broker.js';
import { clockCheck } from './clock.js';
import { loadConfigCheck } from './config-check.js';
import { agentDoctorContext, type AgentDoctorContext } from './context.js';
import { dataDirCheck } from './data-dir.js';
import { identityCheck } from './identity.js';
import { issuerCheck } from './issuer.js';
import { outputChecks } from './outputs.js';
import { secretsCheck } from './secrets.js';
import { tpmCheck, tpmNeed } from './tpm.js';

export async function agentDoctor(configPath: string): Promise<DoctorReport> {
  const loaded = await loadConfigCheck(configPath);
  if (!loaded.cfg) return { checks: [loaded.result], ok: false };
  const ctx = agentDoctorContext(configPath, loaded.cfg);
  try {
    const checks: Array<Check<AgentDoctorContext>> = [dataDirCheck, secretsCheck, ...outputChecks(ctx)];
    const tpm = await tpmNeed(loaded.cfg);
    if (tpm) checks.push(tpmCheck(tpm));
    loaded.cfg.transports.forEach((t, i) => {
      checks.push(issuerCheck(i, t));
      if (t.type === 'mqtt') checks.push(brokerCheck(i, t));
    });
    checks.push(clockCheck, identityCheck);
    const report = await runChecks(checks, ctx);
    return { checks: [loaded.result, ...report.checks], ok: report.ok };
  } finally {
    await ctx.close();
  }
}
