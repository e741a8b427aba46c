/**
 * Summaries of V8 .cpuprofile files (`node --cpu-prof`) for the benches' `--profile`: the top
 * self time and the inclusive time of the project's own functions, source-mapped back to
 * src/*.ts where a source map exists (dist/*.js.map for a process running from dist/).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import inspector from 'node:inspector';
import { findSourceMap, SourceMap } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** `file:line` relative to `root`, in src/*.ts where a source map says so. */
function makeLocator(root: string): (cf: ProfileNode['callFrame']) => string {
  const maps = new Map<string, SourceMap | undefined>();
  const mapFor = (path: string, url: string): SourceMap | undefined => {
    if (!maps.has(path)) {
      let sm: SourceMap | undefined;
      try {
        sm = existsSync(`${path}.map`)
          ? new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')))
          : findSourceMap(url);
      } catch {
        sm = undefined;
      }
      maps.set(path, sm);
    }
    return maps.get(path);
  };
  return (cf) => {
    if (!cf.url) return '(native)';
    let path = cf.url.startsWith('file://') ? fileURLToPath(cf.url) : cf.url;
    let line = cf.lineNumber + 1;
    if (path.startsWith(root) && !path.includes('node_modules')) {
      const e = mapFor(path, cf.url)?.findEntry(cf.lineNumber, cf.columnNumber) as
        { originalSource?: string; originalLine?: number } | undefined;
      if (e?.originalSource) {
        path = e.originalSource.startsWith('file://')
          ? fileURLToPath(e.originalSource)
          : join(path, '..', e.originalSource);
        line = (e.originalLine ?? 0) + 1;
      }
    }
    const rel = path.startsWith(root) ? relative(root, path) : path;
    return `${rel.replace(/^.*node_modules\//, 'node_modules/')}:${line}`;
  };
}

/** Top self time and inclusive time of the project's functions, as percentages of busy (non-idle) time. */
export function summariseProfile(prof: CpuProfile, title: string, root: string, top = 20): string[] {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of prof.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const locate = makeLocator(root);
  const keys = new Map<number, string>();
  const keyOf = (id: number): string => {
    let k = keys.get(id);
    if (k === undefined) {
      const cf = byId.get(id)!.callFrame;
      k = `${cf.functionName || '(anonymous)'} ${locate(cf)}`;
      keys.set(id, k);
    }
    return k;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let all = 0;
  let idle = 0;
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    all += dt;
    if (byId.get(id)!.callFrame.functionName === '(idle)') {
      idle += dt;
      return;
    }
    self.set(keyOf(id), (self.get(keyOf(id)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = keyOf(cur);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  });
  const busy = all - idle;
  const pct = (x: number): string => `${((100 * x) / busy).toFixed(1).padStart(5)}%`;
  const lines = [
    title,
    `  sampled ${(all / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s; percentages are of busy time`,
    '  top self time:',
  ];
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`    ${pct(v)}  ${k}`);
  lines.push('  inclusive time, project code (src/):');
  for (const [k, v] of [...total]
    .filter(([k]) => / src\//.test(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top))
    lines.push(`    ${pct(v)}  ${k}`);
  return lines;
}

/** The summary of the first .cpuprofile `node --cpu-prof-dir <dir>` wrote. */
export function profileDirSummary(dir: string, root: string, title: string): string[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return [`no .cpuprofile was written to ${dir}`];
  const file = join(dir, files[0]!);
  return summariseProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, `${title}: ${file}`, root);
}

/** Profile this thread (main or worker) from now; the returned function stops and hands the profile over. */
export async function startProfile(intervalUs = 1000): Promise<() => Promise<CpuProfile>> {
  const session = new inspector.Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) =>
      session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))),
    );
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: intervalUs });
  await post('Profiler.start');
  return async () => {
    const { profile } = (await post('Profiler.stop')) as { profile: CpuProfile };
    session.disconnect();
    return profile;
  };
}
