/**
 * `sigil doctor --data-dir D`: the issuer's checks — who can write the data directory, the CA,
 * the store, the audit chain, the admin credential, key rotations in progress, the files the join
 * rules name and, with --listen, the port.
 */
import { runChecks } from '../runner.js';
import type { Check, DoctorReport } from '../types.js';
import { adminTokenCheck } from './admin-token.js';
import { auditCheck } from './audit.js';
import { caCheck } from './ca.js';
import type { IssuerDoctorContext } from './context.js';
import { issuerDataDirCheck } from './data-dir.js';
import { keyRotationCheck } from './key-rotation.js';
import { ruleFilesCheck } from './rule-files.js';
import { listenCheck } from './listen.js';
import { storeCheck } from './store.js';

export async function issuerDoctor(opts: { dataDir: string; listen?: string; full?: boolean }): Promise<DoctorReport> {
  const ctx: IssuerDoctorContext = {
    dataDir: opts.dataDir,
    listen: opts.listen,
    full: opts.full ?? false,
    now: () => Date.now(),
  };
  const checks: Array<Check<IssuerDoctorContext>> = [
    issuerDataDirCheck,
    caCheck,
    storeCheck,
    auditCheck,
    adminTokenCheck,
    keyRotationCheck,
    ruleFilesCheck,
  ];
  if (opts.listen !== undefined) checks.push(listenCheck(opts.listen));
  const report = await runChecks(checks, ctx);
  // Without an issuer in the directory, every other finding is noise.
  const first = report.checks[0]!;
  if (first.status === 'fail' && first.detail.startsWith('not_initialized')) return { checks: [first], ok: false };
  return report;
}
