/**
 * The files the stored join rules name (server/policy/rule-files.ts), checked as this user on
 * this host: the issuer reads them at each join, so one it cannot read refuses every join under
 * the rule (`join_rule_unusable`). SQLite only: the rules are read from issuer.db read-only; on
 * PostgreSQL `sigil ctl apply` (local mode) warns when a rule is applied.
 */
import { fail, ok, type Check, type CheckOutcome } from '../types.js';
import type { IssuerDoctorContext } from './context.js';
import { openIssuerDbReadOnly, readStoreKind } from './store.js';

export const ruleFilesCheck: Check<IssuerDoctorContext> = {
  name: 'join_rule_files',
  async run(ctx): Promise<CheckOutcome> {
    const [{ paths }, { ruleFiles, unreadableRuleFiles, describeUnreadable }] = await Promise.all([
      import('../../server/data-dir.js'),
      import('../../server/policy/rule-files.js'),
    ]);
    if (readStoreKind(paths(ctx.dataDir).meta) === 'postgres')
      return ok('not checked on PostgreSQL (sigil ctl apply warns about unreadable files)');
    let rows: Array<{ name: string; spec: string }>;
    try {
      const db = await openIssuerDbReadOnly(paths(ctx.dataDir).db);
      try {
        rows = db
          .prepare<[], { name: string; spec: string }>(
            "SELECT name, spec FROM resources WHERE kind = 'join_rule' ORDER BY name",
          )
          .all();
      } finally {
        db.close();
      }
    } catch (e) {
      return ok(`not checked: the join rules cannot be read (${(e as Error).message}; see the store check)`);
    }
    const files = rows.flatMap((r) => {
      try {
        return ruleFiles(r.name, JSON.parse(r.spec));
      } catch {
        return [];
      }
    });
    const bad = unreadableRuleFiles(files);
    if (bad.length === 0) return ok(`${files.length} file(s) named by ${rows.length} join rule(s), all readable`);
    return fail(
      bad.map(describeUnreadable).join('; '),
      'put each file in place readable by the issuer user (or fix the path: sigil ctl apply -f), then retry the join',
    );
  },
};
