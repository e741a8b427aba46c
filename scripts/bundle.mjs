#!/usr/bin/env node
/**
 * The production bundle (issue #19): `node scripts/bundle.mjs` turns the built dist/ into
 * dist-bundle/, an esbuild split bundle — `sigil.mjs` plus chunks that the lazy `import()`s
 * of the CLI load on demand — that starts faster and idles smaller than ~350 separate modules.
 *
 * Not inlined, but copied into dist-bundle/node_modules/ so the directory is self-contained:
 *   - the native modules better-sqlite3 (+ bindings, file-uri-to-path), koffi (this platform's
 *     build only) and pkcs11js, as built in node_modules/ for this machine's Node (a .node file
 *     cannot be inlined, and they must be built for the target);
 *
 * Data files found through `new URL('../../../<dir>/', import.meta.url)` (firmware-profiles/,
 * assets/aws-iid-certs/, src/agent/workload/proto/) are three levels above their module in
 * dist/, which means nothing once the module is a chunk at the top of dist-bundle/. Each such
 * URL is rewritten to `./<dir>/` and the directory is copied into dist-bundle/, so the bundle
 * is self-contained and can be moved (scripts/package-deb.sh installs it as a whole).
 *
 * One-shot agent commands (`agent run --once`, `agent status`) run from agent-one-shot.cjs, the
 * same code as one CommonJS script with a V8 code cache written here (see below).
 *
 *   node scripts/bundle.mjs [--out DIR] [--no-minify] [--no-minify-identifiers] [--no-keep-names] [--metafile]
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { builtinModules, createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = join(ROOT, 'dist');
const NATIVE = ['better-sqlite3', 'koffi', 'pkcs11js'];
const argv = process.argv.slice(2);
const args = new Set(argv);
/** --out DIR: another directory than dist-bundle/ (A/B measurements of build options). */
const OUT = argv.includes('--out') ? resolve(argv[argv.indexOf('--out') + 1]) : join(ROOT, 'dist-bundle');

if (!existsSync(join(DIST, 'cli', 'main.js'))) {
  process.stderr.write('error[not_built]: dist/ is missing; run: npm run build\n');
  process.exit(2);
}

/** Directories (relative to the repository root) the bundle must carry, found by the plugin. */
const dataDirs = new Set();
const URL_RE = /new URL\((['"])((?:\.\.\/)+)([^'"]+)\1,\s*import\.meta\.url\)/g;

/** Rewrites installation-relative data paths to paths relative to dist-bundle/ (see above). */
const dataPaths = {
  name: 'sigil-data-paths',
  setup(build) {
    build.onLoad({ filter: /\.js$/ }, (a) => {
      if (!a.path.startsWith(DIST)) return undefined;
      const src = readFileSync(a.path, 'utf8');
      if (!src.includes('import.meta.url')) return undefined;
      const contents = src.replace(URL_RE, (m, q, ups, rest) => {
        const target = relative(ROOT, resolve(dirname(a.path), ups + rest));
        if (target.startsWith('..')) throw new Error(`${a.path}: ${m} points outside the repository`);
        dataDirs.add(target.replace(/\/$/, ''));
        return `new URL(${q}./${target}${q}, import.meta.url)`;
      });
      return { contents, loader: 'js' };
    });
  },
};

/**
 * zod's `z.locales`: error messages in ~50 languages, 260 KiB of the 458 KiB zod adds to every
 * command that validates (parsed and compiled at each start: ~5 ms CPU and 3 MB of `agent
 * status`, `agent run`). Sigil never calls z.config(z.locales.xx()); the English messages it
 * prints are zod's default, which classic/schemas.js imports from locales/en.js directly.
 */
const ZOD_LOCALES = /[\\/]node_modules[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/;
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(build) {
    build.onLoad({ filter: ZOD_LOCALES }, (a) => ({
      contents: 'export { default as en } from "./en.js";\n',
      loader: 'js',
      resolveDir: dirname(a.path),
    }));
  },
};

/**
 * zod/mini (src/util/zod-mini.ts: the schemas a token agent validates) with a core of its own.
 * esbuild splits by module: zod's core modules are shared by classic zod (the issuer's schemas)
 * and zod/mini, so the chunk the agent loads held every part of core that classic uses — 160 KB
 * of source, ~2,600 closures, ~1.2 MB of the daemon's heap (heap snapshot of the idle daemon,
 * issue #19). Here zod/mini and everything it imports are loaded under a namespace of their own,
 * a second module graph that esbuild tree-shakes to what zod/mini's users call (~40 KB). The two
 * copies share zod's global configuration (globalThis.__zod_globalConfig: the English messages)
 * and recognise each other's schemas (zod checks instances by trait name, and runs a nested
 * schema through its `_zod` interface), so classic schemas that embed mini ones (and the other way
 * round) behave as with one copy; the tests (tsx, dist/: one copy) and the bundle agree.
 */
const ZOD_MINI_ENTRY = /^zod\/(mini|v4\/locales\/en\.js)$/;
const zodMiniOwnCore = {
  name: 'zod-mini-own-core',
  setup(build) {
    build.onResolve({ filter: ZOD_MINI_ENTRY }, async (a) => {
      if (a.namespace === 'zod-mini' || a.pluginData?.real) return undefined;
      const real = await build.resolve(a.path, { kind: a.kind, resolveDir: a.resolveDir, pluginData: { real: true } });
      if (real.errors.length > 0) return { errors: real.errors };
      return { path: real.path, namespace: 'zod-mini', sideEffects: false };
    });
    // Inside the copy every import is relative (zod's own files).
    build.onResolve({ filter: /.*/, namespace: 'zod-mini' }, (a) => {
      if (!a.path.startsWith('.')) return { errors: [{ text: `zod-mini-own-core: unexpected import ${a.path}` }] };
      return { path: resolve(a.resolveDir, a.path), namespace: 'zod-mini', sideEffects: false };
    });
    build.onLoad({ filter: /.*/, namespace: 'zod-mini' }, (a) => ({
      contents: ZOD_LOCALES.test(a.path) ? 'export { default as en } from "./en.js";\n' : readFileSync(a.path, 'utf8'),
      loader: 'js',
      resolveDir: dirname(a.path),
    }));
  },
};

/**
 * Node's built-in modules without their expensive lazy exports. An ES module import of a built-in
 * makes Node build its ES module facade, which reads every export once, lazy getters included:
 * `node:tls` materialises `rootCertificates` (149 PEM strings, ~220 KB kept for the life of the
 * process) and `node:crypto` loads WebCrypto. Measured with node, https, tls, crypto and fs
 * imported in an idle process under the unit flags: +1.1 MB RSS over the same modules required
 * (issue #19). Each static import of a built-in goes instead through a small ES module that
 * requires it (the banner's `require`) and exports its properties by name — all but the getters
 * listed here, which code reads from the module object (`tls.rootCertificates`) when it needs
 * them; importing one by name fails the build. (A CommonJS shim measured worse: esbuild's interop
 * copies every export as a getter closure into each importing chunk.)
 */
const LAZY_BUILTIN_EXPORTS = {
  tls: ['rootCertificates'],
  crypto: ['webcrypto', 'subtle', 'getRandomValues', 'fips', 'prng', 'rng', 'pseudoRandomBytes'],
};
const builtinsWithoutFacade = {
  name: 'builtins-without-facade',
  setup(build) {
    const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
    const req = createRequire(import.meta.url);
    build.onResolve({ filter: /^[a-z_]/ }, (a) => {
      if (a.kind !== 'import-statement' || !builtins.has(a.path)) return undefined;
      return { path: a.path.replace(/^node:/, ''), namespace: 'builtin-esm' };
    });
    build.onLoad({ filter: /.*/, namespace: 'builtin-esm' }, (a) => {
      const lazy = new Set(LAZY_BUILTIN_EXPORTS[a.path] ?? []);
      const names = Object.keys(Object.getOwnPropertyDescriptors(req(`node:${a.path}`))).filter(
        (k) => /^[A-Za-z_$][\w$]*$/.test(k) && k !== 'default' && !lazy.has(k) && isBindingName(k),
      );
      return {
        contents:
          `const m = require(${JSON.stringify(`node:${a.path}`)});\nexport default m;\n` +
          (names.length ? `export const { ${names.join(', ')} } = m;\n` : ''),
        loader: 'js',
      };
    });
  },
};
function isBindingName(k) {
  try {
    new Function(`let ${k};`);
    return true;
  } catch {
    return false;
  }
}

/**
 * CommonJS packages that dist/ imports with a dynamic `import()` and then uses by named export
 * (`(await import('mqtt')).connect`). In a split bundle esbuild turns such a package into a chunk
 * whose only export is `default` (module.exports), so the named export came out undefined: the
 * bundled agent and issuer failed every MQTT connection with "a.connect is not a function"
 * (found by bench/agent-footprint.ts --tpm-mqtt). Each is imported through a small ESM wrapper
 * that re-exports module.exports' own properties by name, as Node's ESM loader does for dist/.
 */
const CJS_NAMED_IMPORTS = ['mqtt'];
const cjsNamedExports = {
  name: 'cjs-named-exports',
  setup(build) {
    const filter = new RegExp(`^(${CJS_NAMED_IMPORTS.join('|')})$`);
    build.onResolve({ filter }, async (a) => {
      if (a.pluginData?.real || !a.importer.startsWith(DIST)) return undefined;
      const real = await build.resolve(a.path, { kind: a.kind, resolveDir: a.resolveDir, pluginData: { real: true } });
      if (real.errors.length > 0) return { errors: real.errors };
      return { path: real.path, namespace: 'cjs-named', pluginData: { name: a.path } };
    });
    build.onLoad({ filter: /.*/, namespace: 'cjs-named' }, (a) => {
      const names = Object.keys(createRequire(a.path)(a.path)).filter(
        (k) => /^[A-Za-z_$][\w$]*$/.test(k) && k !== 'default',
      );
      return {
        contents:
          `import m from ${JSON.stringify(a.path)};\nexport default m;\n` +
          names.map((k) => `export const ${k} = m[${JSON.stringify(k)}];`).join('\n'),
        loader: 'js',
        resolveDir: dirname(a.path),
      };
    });
  },
};

/**
 * yaml as its ES module build (the package's non-node export, browser/dist/: the same source as
 * its CommonJS build but for log.js, which warns through console.warn instead of
 * process.emitWarning — stderr either way). esbuild hoists ES modules into one scope, where the
 * CommonJS build is ~40 modules each wrapped in a function with its own exports object: `agent
 * status`, which parses agent.yaml and little else, measured −7 ms CPU (1.99× → 1.85× bare node).
 */
const YAML_ESM = join(ROOT, 'node_modules', 'yaml', 'browser', 'dist', 'index.js');
if (!existsSync(YAML_ESM)) throw new Error(`${YAML_ESM} is missing: has yaml's package layout changed?`);

// Function and class names stay (stack traces; code that reads fn.name). Dropping them (--no-keep-names) measured no CPU difference for `agent
// status`, 1–3 MB less peak RSS and 1.1 MB less daemon idle RSS. --no-minify-identifiers (names
// kept as written, no __name calls) measured no daemon RSS gain: the longer source offsets it.
const MINIFY = args.has('--no-minify-identifiers')
  ? { minifyWhitespace: true, minifySyntax: true, minifyIdentifiers: false, keepNames: false }
  : { minify: !args.has('--no-minify'), keepNames: !args.has('--no-keep-names') };

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
const result = await esbuild.build({
  // The entry sends the one-shot agent commands to agent-one-shot.cjs (below), the rest to main.js.
  entryPoints: { sigil: join(DIST, 'cli', 'bundle-entry.js') },
  outdir: OUT,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  ...MINIFY,
  sourcemap: false,
  legalComments: 'none',
  external: NATIVE,
  metafile: true,
  logLevel: 'warning',
  // Bundled CommonJS (yaml, mqtt…) calls require() for Node built-ins; ESM output has none.
  banner: {
    js: "import { createRequire as __sigilCreateRequire } from 'node:module'; const require = __sigilCreateRequire(import.meta.url);",
  },
  plugins: [dataPaths, zodEnglishOnly, zodMiniOwnCore, builtinsWithoutFacade, cjsNamedExports],
  alias: { yaml: YAML_ESM },
});

/**
 * `agent run --once` and `agent status` once more, as ONE CommonJS script: Node 20 can give a
 * V8 code cache to a script compiled through vm.Script but to no ES module, and the cache halves
 * what those commands spend compiling (src/cli/code-cache.ts; docs/performance.md "Agent
 * footprint"). dist-bundle/sigil.mjs (src/cli/bundle-entry.ts) runs it for those lines. Not
 * split: dynamic import()s of bundled modules become lazy initialisers (esbuild), so only what a
 * command reaches runs; import() of the native modules becomes require(), as vm.Script has no
 * ES module loader. import.meta.url is the script's own URL, so the data paths above hold.
 */
const ONE_SHOT = join(OUT, 'agent-one-shot.cjs');
await esbuild.build({
  entryPoints: [join(DIST, 'cli', 'one-shot.js')],
  outfile: ONE_SHOT,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  supported: { 'dynamic-import': false },
  ...MINIFY,
  sourcemap: false,
  legalComments: 'none',
  external: NATIVE,
  logLevel: 'warning',
  define: { 'import.meta.url': '__sigilModuleUrl' },
  banner: { js: "const __sigilModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  plugins: [dataPaths, zodEnglishOnly, zodMiniOwnCore, cjsNamedExports],
  alias: { yaml: YAML_ESM },
});
for (const d of dataDirs) cpSync(join(ROOT, d), join(OUT, d), { recursive: true });

// The check for cjsNamedExports: each such package's chunk has module.exports' names as exports.
for (const name of CJS_NAMED_IMPORTS) {
  const main = relative(ROOT, createRequire(join(ROOT, 'package.json')).resolve(name));
  const chunk = Object.entries(result.metafile.outputs).find(([, o]) => main in o.inputs)?.[0];
  if (!chunk) throw new Error(`${name}: no chunk holds ${main}`);
  const ns = await import(join(ROOT, chunk));
  const lost = Object.keys(ns.default ?? {}).filter(
    (k) => k !== 'default' && /^[A-Za-z_$][\w$]*$/.test(k) && ns[k] !== ns.default[k],
  );
  if (lost.length > 0)
    throw new Error(`${chunk} (${name}) does not export ${lost.join(', ')}: named imports would be undefined`);
}

// The checks for zodMiniOwnCore and builtinsWithoutFacade: what the chunk of the agent's config
// loader loads (its static imports, transitively) holds no classic zod, and no chunk imports a
// built-in as an ES module (each would undo the memory the plugins exist for).
{
  const outs = result.metafile.outputs;
  const holder = Object.keys(outs).find((o) => 'dist/agent/config.js' in outs[o].inputs);
  if (!holder) throw new Error('no chunk holds dist/agent/config.js');
  const seen = new Set();
  const walk = (o) => {
    if (seen.has(o)) return;
    seen.add(o);
    for (const i of outs[o].imports) if (i.kind === 'import-statement' && !i.external) walk(i.path);
  };
  walk(holder);
  // zod's files outside the zod-mini namespace are the copy classic zod uses.
  const shared = [...seen].filter((o) => Object.keys(outs[o].inputs).some((i) => i.startsWith('node_modules/zod/')));
  if (shared.length > 0) throw new Error(`the agent's config chunk loads classic zod's core (${shared.join(', ')})`);
  const facades = Object.entries(outs).flatMap(([o, v]) =>
    v.imports
      .filter(
        (i) =>
          i.external &&
          i.kind === 'import-statement' &&
          builtinModules.includes(i.path.replace(/^node:/, '')) &&
          i.path !== 'node:module',
      )
      .map((i) => `${o}: ${i.path}`),
  );
  if (facades.length > 0) throw new Error(`built-ins imported as ES modules: ${facades.slice(0, 5).join(', ')}`);
}

// node_modules/ beside the chunks: what Node's resolution from dist-bundle/*.mjs finds first.
const NM = join(ROOT, 'node_modules');
const OUT_NM = join(OUT, 'node_modules');
/** Copy `files` (relative to the package) of package `name`, which must exist. */
function copyPackage(name, files) {
  for (const f of ['package.json', ...files]) {
    const from = join(NM, name, f);
    if (!existsSync(from)) throw new Error(`${name}: ${f} is missing; run npm ci (natives are built at install)`);
    cpSync(from, join(OUT_NM, name, f), { recursive: true });
  }
}
copyPackage('better-sqlite3', ['lib', 'build/Release/better_sqlite3.node']);
copyPackage('bindings', ['bindings.js']);
copyPackage('file-uri-to-path', ['index.js']);
copyPackage('pkcs11js', ['index.js', 'build/Release/pkcs11.node']);
const koffiTriplet = `${process.platform === 'linux' && process.report?.getReport().header.glibcVersionRuntime === undefined ? 'musl' : process.platform}_${process.arch}`;
copyPackage('koffi', ['index.js', 'indirect.js', 'lib', `build/koffi/${koffiTriplet}`]);
// The entry as an executable, like bin/sigil.js.
const entry = join(OUT, 'sigil.mjs');
writeFileSync(entry, `#!/usr/bin/env node\n${readFileSync(entry, 'utf8')}`, { mode: 0o755 });
// Its code cache, written by the node binary running this build (the one the package ships).
const train = spawnSync(process.execPath, [join(ROOT, 'scripts', 'code-cache-train.mjs'), ONE_SHOT], {
  encoding: 'utf8',
  env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
});
if (train.status !== 0) throw new Error(`code cache training failed (${train.status}): ${train.stderr.slice(-3000)}`);
if (args.has('--metafile')) writeFileSync(join(OUT, 'meta.json'), JSON.stringify(result.metafile));

const outputs = Object.entries(result.metafile.outputs);
const total = outputs.reduce((n, [, o]) => n + o.bytes, 0);
process.stdout.write(
  `${relative(ROOT, OUT) || OUT}/: ${outputs.length} files, ${(total / 1024).toFixed(0)} KiB of JS; data: ${[...dataDirs].join(', ') || 'none'}; external: ${NATIVE.join(', ')}\n`,
);
