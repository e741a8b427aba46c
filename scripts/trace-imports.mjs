/**
 * Which modules a command loads, and from where: `node --import ./scripts/trace-imports.mjs
 * bin/sigil.js agent status --config …` prints, at exit on stderr, the module count per package
 * and, for each package outside the project, the first chain of imports that pulled it in.
 * SIGIL_TRACE_IMPORTS=all lists every module in load order. A footprint tool (issue #19): it
 * answers "why is pkijs in a token agent" without a CPU profile.
 */
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';

const { port1, port2 } = new MessageChannel();
/** url → the url that first imported it; insertion order is load order. */
const parents = new Map();
port1.on('message', (m) => {
  if (!parents.has(m.url)) parents.set(m.url, m.parent);
});
port1.unref();
register(
  'data:text/javascript,' +
    encodeURIComponent(`
let port;
export function initialize(d) { port = d.port; }
export async function resolve(spec, ctx, next) {
  const r = await next(spec, ctx);
  port.postMessage({ url: r.url, parent: ctx.parentURL ?? null });
  return r;
}`),
  { data: { port: port2 }, transferList: [port2] },
);

function pkgOf(url) {
  if (url.startsWith('node:')) return 'node:';
  const i = url.lastIndexOf('/node_modules/');
  if (i < 0) return url.includes('/dist/') || url.includes('/src/') ? '(sigil)' : '(other)';
  const rest = url.slice(i + 14).split('/');
  return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
}
const short = (u) => (u ? u.replace(/^file:\/\/.*?\/(dist|src|node_modules)\//, '$1/') : '(entry)');

process.on('exit', () => {
  // Messages already queued are delivered before exit only if drained; receive them synchronously.
  const { receiveMessageOnPort } = process.getBuiltinModule?.('node:worker_threads') ?? {};
  for (let m = receiveMessageOnPort?.(port1); m; m = receiveMessageOnPort(port1))
    if (!parents.has(m.message.url)) parents.set(m.message.url, m.message.parent);
  const byPkg = new Map();
  for (const url of parents.keys()) {
    const p = pkgOf(url);
    if (!byPkg.has(p)) byPkg.set(p, { n: 0, first: url });
    byPkg.get(p).n++;
  }
  const out = [`trace-imports: ${parents.size} modules`];
  for (const [p, { n, first }] of [...byPkg].sort((a, b) => b[1].n - a[1].n)) {
    let chain = [];
    if (p !== '(sigil)' && p !== 'node:')
      for (let u = first; u && chain.length < 12; u = parents.get(u)) chain.push(short(u));
    out.push(`  ${String(n).padStart(4)} ${p}${chain.length ? `  ← ${chain.slice(1).join(' ← ')}` : ''}`);
  }
  if (process.env.SIGIL_TRACE_IMPORTS === 'all') for (const u of parents.keys()) out.push(`    ${short(u)}`);
  process.stderr.write(out.join('\n') + '\n');
});
