/**
 * The files a join rule names (`ca_file`, `crl_files`, `jwks_file`, `certs_dir`, …): the issuer
 * reads them when a join arrives, not when the rule is applied, so a typo used to surface only as
 * `join_rule_unusable` on the first join — with agents retrying against it. `sigil ctl apply`
 * (local mode: it runs where the issuer reads them) and `sigil doctor` check each one now.
 *
 * Found by name, not by method: every rule field that holds a path ends in `_file`, `_files` or
 * `_dir` (src/join/rule-fields.ts absolutePathField), so a new method's fields are covered
 * without a list to keep in step.
 */
import fs from 'node:fs';

export interface RuleFile {
  rule: string;
  /** Dotted field path within the spec, e.g. `oidc.ca_file` or `crl_files[1]`. */
  field: string;
  path: string;
  dir: boolean;
}

export interface UnreadableRuleFile extends RuleFile {
  /** errno code, or what is wrong with what is there (`not a regular file`). */
  problem: string;
}

const PATH_KEY = /_(file|files|dir)$/;

/** Every path a join rule's spec names. */
export function ruleFiles(rule: string, spec: unknown): RuleFile[] {
  const out: RuleFile[] = [];
  const walk = (v: unknown, at: string, key: string | undefined): void => {
    if (typeof v === 'string') {
      if (key !== undefined && PATH_KEY.test(key)) out.push({ rule, field: at, path: v, dir: key.endsWith('_dir') });
    } else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${at}[${i}]`, key));
    else if (v !== null && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) walk(x, at ? `${at}.${k}` : k, k);
  };
  walk(spec, '', undefined);
  return out;
}

/** The files this process cannot read (or that are not what the field expects). */
export function unreadableRuleFiles(files: readonly RuleFile[]): UnreadableRuleFile[] {
  const out: UnreadableRuleFile[] = [];
  for (const f of files) {
    try {
      const st = fs.statSync(f.path);
      if (f.dir ? !st.isDirectory() : !st.isFile()) {
        out.push({ ...f, problem: f.dir ? 'not a directory' : 'not a regular file' });
        continue;
      }
      fs.accessSync(f.path, f.dir ? fs.constants.R_OK | fs.constants.X_OK : fs.constants.R_OK);
    } catch (e) {
      out.push({ ...f, problem: (e as NodeJS.ErrnoException).code ?? 'unreadable' });
    }
  }
  return out;
}

/** One line per file, for `ctl apply` and doctor. */
export const describeUnreadable = (f: UnreadableRuleFile): string =>
  `join_rule/${f.rule}: ${f.field} ${f.path} (${f.problem})`;
