#!/usr/bin/env node
// House rules for src/ (issue #13), checked with TypeScript's own parser (no regexes over code):
//
//   layer         src/tpm/, src/pki/, src/protocol/, src/attest/ import nothing from src/server/, src/agent/,
//                 src/join/, src/transport/, src/cli/; native/ (the C boundary) imports nothing from src/ but
//                 src/errors.ts.
//   join-method   src/join/<m>/ imports no other method folder (src/join/<other>/) and nothing from
//                 src/server/ or src/agent/; the shared src/join/*.ts files are the allowed ports.
//   cycle         no import cycles between files (one report per strongly connected group of files).
//   module-state  no module-level mutable state: top-level `let`/`var`; a top-level `const` holding a
//                 `new WeakMap/WeakSet`; a top-level `const` (Map, Set, array, object, instance) that is
//                 mutated (`.set/.add/.delete/.clear/.push/…`, `x.p = …`, `x.p++`, `delete x.p`,
//                 `Object.assign(x, …)`, or handed to a top-level function that mutates that parameter)
//                 in its own file or, when exported, through an import in src/. A class's static field that
//                 is not readonly, or holds a Map/Set/WeakMap/WeakSet, is module-level state too.
//                 A Map/Set named in UPPER_CASE that nothing mutates is a lookup table, i.e. a constant;
//                 a camelCase Map/Set is taken for a cache even when it is filled through a helper.
//
// Every import counts: `import`, `import type`, `export … from`, `import x = require()`, `import('…')`
// and `typeof import('…')` types — a type-only import is still coupling.
//
// Known violations live in scripts/layers-baseline.json (rule, file, detail, reason). The check fails on
// a violation that is not in the baseline and on a baseline entry that no longer occurs, so the
// baseline only shrinks. `--update-baseline` drops the entries that no longer occur (and never adds
// one, unless `--accept-new` is given too: that is how the first baseline was written).
//
// Usage: node scripts/check-layers.mjs [--root DIR] [--baseline FILE] [--update-baseline [--accept-new]]
// Exit 0 (`layers: ok (N files, M baseline entries)`), 1 (violations, one line each), 2 (usage error).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';

const DEFAULT_REASON = 'to be removed by the issuer-core redesign, #13';

/** Core layers that must not know about the hosts above them. */
export const CORE_LAYERS = ['tpm', 'pki', 'protocol', 'attest'];
export const CORE_FORBIDDEN = ['server', 'agent', 'join', 'transport', 'cli'];
/** native/ is below everything: it may use the error type and nothing else from src/. */
export const NATIVE_ALLOWED = ['src/errors.ts'];
/** What a join method folder must not import besides other method folders. */
export const METHOD_FORBIDDEN = ['server', 'agent'];

/**
 * Module-level state that is allowed on purpose. Each entry: file, the declared name, and why it is
 * not per-issuer state. Keep it short; an entry here is a decision, not debt (debt goes in the baseline).
 */
export const MODULE_STATE_ALLOWLIST = [
  // A signal handler is process-wide by nature.
  {
    file: 'src/cli/reload-signal.ts',
    name: 'reloadSignal',
    reason:
      "SIGHUP for `sigil server start`, caught once per process from the CLI's first moment (its default action would end the process) and handed to the one issuer the process serves",
  },
  // Lazily loaded native/optional modules: a process-wide handle to code, not to configuration.
  {
    file: 'native/tss2-tctildr.ts',
    name: 'loaded',
    reason:
      'the koffi declarations of libtss2-tctildr, made once per process: koffi never frees a declaration (~11 KB each), so re-declaring per TCTI open would leak (code, not state)',
  },
  {
    file: 'src/keystore/pkcs11/module.ts',
    name: 'bindings',
    reason: 'memoised require of the pkcs11js native module (code, not state)',
  },
  {
    file: 'src/transport/mqtt/connect.ts',
    name: 'mqttModule',
    reason: 'memoised import of the mqtt package (code, not state)',
  },
  // PKCS#11: C_Initialize once per process (a second call answers CKR_CRYPTOKI_ALREADY_INITIALIZED).
  {
    file: 'src/keystore/pkcs11/module.ts',
    name: 'loaded',
    reason:
      'refcounted PKCS#11 libraries; a library is initialised once per process (PKCS#11 C_Initialize), and the PINs its tokens refused are remembered per library: the token counts wrong PINs whoever presents them, so two users in one process must not each spend a try',
  },
  // A CSPRNG byte pool (randomFillSync costs ~2 µs per call, see the file): nothing observable is shared.
  {
    file: 'src/pki/serial.ts',
    name: 'poolOffset',
    reason: 'read position in the random-serial byte pool; no configuration, nothing observable',
  },
];

// Methods that change the receiver (Array, Map, Set, WeakMap, WeakSet).
const MUTATING_METHODS = new Set([
  'set',
  'add',
  'delete',
  'clear',
  'push',
  'pop',
  'shift',
  'unshift',
  'splice',
  'sort',
  'reverse',
  'fill',
  'copyWithin',
]);
const COLLECTIONS = new Set(['Map', 'Set', 'WeakMap', 'WeakSet']);
const CONSTANT_NAME = /^[A-Z][A-Z0-9_]*$/; // a name, not code: UPPER_CASE marks a lookup table
const TS_EXT = { '.js': '.ts', '.mjs': '.mts', '.cjs': '.cts', '.jsx': '.tsx' };

// ---------------------------------------------------------------------------------------------- files

/** All .ts/.mts/.cts/.tsx files under root/src and root/native, as root-relative posix paths, sorted. */
export function collectFiles(root) {
  const out = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(c|m)?tsx?$/.test(e.name) && !e.name.endsWith('.d.ts'))
        out.push(path.relative(root, p).split(path.sep).join('/'));
    }
  };
  for (const top of ['src', 'native']) {
    const dir = path.join(root, top);
    if (fs.existsSync(dir)) walk(dir);
  }
  return out.sort();
}

/** Resolve a relative specifier from `from` (root-relative) to a root-relative path; `known` marks real files. */
function resolveSpecifier(from, spec, known) {
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), spec));
  const ext = path.posix.extname(base);
  const candidates = [];
  if (TS_EXT[ext]) candidates.push(base.slice(0, -ext.length) + TS_EXT[ext]);
  candidates.push(base, `${base}.ts`, `${base}/index.ts`);
  for (const c of candidates) if (known.has(c)) return { target: c, resolved: true };
  return { target: candidates[0], resolved: false };
}

// ------------------------------------------------------------------------------------------- parsing

/** Root identifier and property names of `a.b[c].d` (through parentheses, `!`, `as`); null if not such a chain. */
function accessChain(node) {
  const props = [];
  let n = node;
  for (;;) {
    if (
      ts.isParenthesizedExpression(n) ||
      ts.isNonNullExpression(n) ||
      ts.isAsExpression(n) ||
      ts.isTypeAssertionExpression(n) ||
      ts.isSatisfiesExpression(n)
    )
      n = n.expression;
    else if (ts.isPropertyAccessExpression(n)) {
      props.unshift(n.name.text);
      n = n.expression;
    } else if (ts.isElementAccessExpression(n)) {
      props.unshift(ts.isStringLiteralLike(n.argumentExpression) ? n.argumentExpression.text : '[]');
      n = n.expression;
    } else break;
  }
  return ts.isIdentifier(n) ? { root: n.text, props } : null;
}

function isAssignmentOperator(kind) {
  return kind >= ts.SyntaxKind.FirstAssignment && kind <= ts.SyntaxKind.LastAssignment;
}

function unwrap(expr) {
  let e = expr;
  while (
    e &&
    (ts.isParenthesizedExpression(e) ||
      ts.isAsExpression(e) ||
      ts.isSatisfiesExpression(e) ||
      ts.isTypeAssertionExpression(e) ||
      ts.isNonNullExpression(e))
  )
    e = e.expression;
  return e;
}

function bindingNames(name, out = []) {
  if (ts.isIdentifier(name)) out.push(name.text);
  else for (const el of name.elements) if (!ts.isOmittedExpression(el)) bindingNames(el.name, out);
  return out;
}

/** The access chain `node` mutates, if it is a mutation: `x.set(…)`, `x.p = …`, `x.p++`, `delete x.p`, `Object.assign(x, …)`. */
function mutationOf(node) {
  if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
    const callee = node.expression;
    if (MUTATING_METHODS.has(callee.name.text)) return accessChain(callee.expression);
    if (
      ts.isIdentifier(callee.expression) &&
      ['Object', 'Reflect'].includes(callee.expression.text) &&
      node.arguments.length > 0 &&
      ['assign', 'defineProperty', 'defineProperties', 'setPrototypeOf', 'set', 'deleteProperty'].includes(
        callee.name.text,
      )
    )
      return accessChain(node.arguments[0]);
    return null;
  }
  let c = null;
  if (ts.isBinaryExpression(node) && isAssignmentOperator(node.operatorToken.kind)) c = accessChain(node.left);
  else if (
    (ts.isPrefixUnaryExpression(node) || ts.isPostfixUnaryExpression(node)) &&
    (node.operator === ts.SyntaxKind.PlusPlusToken || node.operator === ts.SyntaxKind.MinusMinusToken)
  )
    c = accessChain(node.operand);
  else if (ts.isDeleteExpression(node)) return accessChain(node.expression);
  return c && c.props.length > 0 ? c : null; // `x = …` rebinds (a compile error on a const); `x.p = …` mutates
}

/**
 * One file: its imports (specifier, kind), its top-level variable declarations, the access chains it
 * mutates, and its named/namespace import bindings (to attribute mutations of imported consts).
 */
export function parseFile(rel, text) {
  const sf = ts.createSourceFile(
    rel,
    text,
    ts.ScriptTarget.Latest,
    true,
    rel.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS,
  );
  const imports = [];
  const bindings = []; // { local, spec, imported } imported = '*' for a namespace
  const topLevel = []; // { keyword: 'let'|'var'|'const', name, init: 'Map'|'array'|'object'|'other'|'none', exported }
  const mutated = []; // { root, props }
  const calls = []; // { ns, name, index, arg }: `ns.name(…, arg, …)` or `name(…, arg, …)` with arg an identifier
  const functions = new Map(); // top-level function name → indexes of the parameters it mutates

  const addImport = (spec, kind, node) =>
    imports.push({ spec, kind, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });

  for (const st of sf.statements) {
    if (ts.isImportDeclaration(st) && ts.isStringLiteral(st.moduleSpecifier)) {
      const clause = st.importClause;
      const allTypes =
        !!clause?.isTypeOnly ||
        (!!clause &&
          !clause.name &&
          !!clause.namedBindings &&
          ts.isNamedImports(clause.namedBindings) &&
          clause.namedBindings.elements.length > 0 &&
          clause.namedBindings.elements.every((e) => e.isTypeOnly));
      addImport(st.moduleSpecifier.text, allTypes ? 'type' : 'static', st);
      if (clause?.name) bindings.push({ local: clause.name.text, spec: st.moduleSpecifier.text, imported: 'default' });
      if (clause?.namedBindings) {
        if (ts.isNamespaceImport(clause.namedBindings))
          bindings.push({ local: clause.namedBindings.name.text, spec: st.moduleSpecifier.text, imported: '*' });
        else
          for (const e of clause.namedBindings.elements)
            bindings.push({
              local: e.name.text,
              spec: st.moduleSpecifier.text,
              imported: (e.propertyName ?? e.name).text,
            });
      }
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier && ts.isStringLiteral(st.moduleSpecifier)) {
      addImport(st.moduleSpecifier.text, st.isTypeOnly ? 'type' : 'static', st);
    } else if (
      ts.isImportEqualsDeclaration(st) &&
      ts.isExternalModuleReference(st.moduleReference) &&
      ts.isStringLiteral(st.moduleReference.expression)
    ) {
      addImport(st.moduleReference.expression.text, st.isTypeOnly ? 'type' : 'static', st);
    } else if (ts.isClassDeclaration(st) && st.name) {
      // A static field is module-level state under another name.
      for (const m of st.members) {
        if (
          !ts.isPropertyDeclaration(m) ||
          !m.modifiers?.some((x) => x.kind === ts.SyntaxKind.StaticKeyword) ||
          !(ts.isIdentifier(m.name) || ts.isPrivateIdentifier(m.name))
        )
          continue;
        const readonly = m.modifiers.some((x) => x.kind === ts.SyntaxKind.ReadonlyKeyword);
        const init = unwrap(m.initializer);
        const coll =
          init && ts.isNewExpression(init) && ts.isIdentifier(init.expression) && COLLECTIONS.has(init.expression.text)
            ? init.expression.text
            : null;
        if (!readonly || coll) {
          topLevel.push({
            keyword: 'static',
            name: `${st.name.text}.${m.name.text}`,
            init: coll ?? 'other',
            readonly,
            exported: false,
            line: sf.getLineAndCharacterOfPosition(m.getStart(sf)).line + 1,
          });
        }
      }
    } else if (ts.isVariableStatement(st)) {
      const flags = ts.getCombinedNodeFlags(st.declarationList);
      // `using` declarations are per-scope disposal, not state; treat them like const.
      const keyword =
        flags & ts.NodeFlags.Let ? 'let' : flags & (ts.NodeFlags.Const | ts.NodeFlags.Using) ? 'const' : 'var';
      const exported = !!st.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
      for (const d of st.declarationList.declarations) {
        const init = unwrap(d.initializer);
        let kind = 'none';
        if (init) {
          if (ts.isNewExpression(init) && ts.isIdentifier(init.expression) && COLLECTIONS.has(init.expression.text))
            kind = init.expression.text;
          else if (ts.isArrayLiteralExpression(init)) kind = 'array';
          else if (ts.isObjectLiteralExpression(init)) kind = 'object';
          else kind = 'other';
        }
        for (const name of bindingNames(d.name))
          topLevel.push({
            keyword,
            name,
            init: kind,
            exported,
            line: sf.getLineAndCharacterOfPosition(d.getStart(sf)).line + 1,
          });
      }
    }
  }

  const visit = (node) => {
    if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments.length > 0 &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      addImport(node.arguments[0].text, 'dynamic', node);
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      addImport(node.argument.literal.text, 'type', node);
    } else if (ts.isCallExpression(node)) {
      // Calls that pass a plain identifier, so a helper that mutates its parameter (`remember(memo, k, v)`) counts.
      const callee = ts.isIdentifier(node.expression)
        ? { ns: null, name: node.expression.text }
        : ts.isPropertyAccessExpression(node.expression) && ts.isIdentifier(node.expression.expression)
          ? { ns: node.expression.expression.text, name: node.expression.name.text }
          : null;
      if (callee)
        node.arguments.forEach((a, index) => {
          const arg = unwrap(a);
          if (ts.isIdentifier(arg)) calls.push({ ...callee, index, arg: arg.text });
        });
    }
    const m = mutationOf(node);
    if (m) mutated.push(m);
    ts.forEachChild(node, visit);
  };
  visit(sf);

  // Top-level functions (`function f(…)`, `const f = (…) => …`) and which of their parameters they mutate.
  for (const st of sf.statements) {
    const fns = [];
    if (ts.isFunctionDeclaration(st) && st.name && st.body) fns.push({ name: st.name.text, fn: st });
    else if (ts.isVariableStatement(st)) {
      for (const d of st.declarationList.declarations) {
        const init = unwrap(d.initializer);
        if (ts.isIdentifier(d.name) && init && (ts.isArrowFunction(init) || ts.isFunctionExpression(init)))
          fns.push({ name: d.name.text, fn: init });
      }
    }
    for (const { name, fn } of fns) {
      const params = fn.parameters.map((p) => (ts.isIdentifier(p.name) ? p.name.text : null));
      const roots = new Set();
      const walk = (n) => {
        const c = mutationOf(n);
        if (c) roots.add(c.root);
        ts.forEachChild(n, walk);
      };
      if (fn.body) walk(fn.body);
      const mutates = params.flatMap((p, i) => (p && roots.has(p) ? [i] : []));
      if (mutates.length) functions.set(name, new Set(mutates));
    }
  }
  return { imports, bindings, topLevel, mutated, calls, functions };
}

// ------------------------------------------------------------------------------------------ the rules

/** `src/pki/x.ts` → { top: 'pki', method: null }; `src/join/tpm/x.ts` → { top: 'join', method: 'tpm' }. */
function placeOf(rel) {
  const parts = rel.split('/');
  if (parts[0] === 'native') return { top: 'native', method: null };
  if (parts[0] !== 'src' || parts.length < 3) return { top: null, method: null };
  return { top: parts[1], method: parts[1] === 'join' && parts.length >= 4 ? parts[2] : null };
}

function layerViolation(file, target) {
  const a = placeOf(file);
  const b = placeOf(target);
  if (a.top === 'native' && b.top !== 'native' && !NATIVE_ALLOWED.includes(target))
    return { rule: 'layer', why: 'native must not depend on src/ beyond src/errors.ts' };
  if (!a.top || !b.top) return null;
  if (CORE_LAYERS.includes(a.top) && CORE_FORBIDDEN.includes(b.top))
    return { rule: 'layer', why: `${a.top} must not depend on ${b.top}` };
  if (a.method) {
    if (METHOD_FORBIDDEN.includes(b.top))
      return { rule: 'join-method', why: `join/${a.method} must not depend on ${b.top}` };
    if (b.method && b.method !== a.method) {
      return {
        rule: 'join-method',
        why: `join/${a.method} must not depend on join/${b.method}; methods share code through the src/join/*.ts ports`,
      };
    }
  }
  return null;
}

/** Tarjan's strongly connected components; returns the groups with more than one file (or a self-import). */
function cycles(graph) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const onStack = new Set();
  const stack = [];
  const out = [];
  const strong = (v) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const group = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1 || graph.get(v)?.has(v)) out.push(group.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) strong(v);
  return out;
}

/** A shortest loop through the first file of a group (BFS inside the group), for the message. */
function exampleLoop(group, graph) {
  const inGroup = new Set(group);
  const start = group[0];
  const prev = new Map([[start, null]]);
  const queue = [start];
  while (queue.length) {
    const v = queue.shift();
    for (const w of [...(graph.get(v) ?? [])].sort()) {
      if (!inGroup.has(w)) continue;
      if (w === start) {
        const loop = [start];
        for (let x = v; x !== null && x !== start; x = prev.get(x)) loop.splice(1, 0, x);
        return [...loop, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

function isAllowed(allowlist, file, name, used) {
  const hit = allowlist.find((a) => a.file === file && a.name === name);
  if (hit) used.add(hit);
  return !!hit;
}

/**
 * All violations under root/src. Each: { rule, file, detail, message, files? (cycles) }.
 * `detail` has no line numbers, so the baseline survives unrelated edits.
 */
export function findViolations(root, { allowlist = MODULE_STATE_ALLOWLIST } = {}) {
  const files = collectFiles(root);
  const known = new Set(files);
  const parsed = new Map(files.map((f) => [f, parseFile(f, fs.readFileSync(path.join(root, f), 'utf8'))]));
  const violations = [];
  const graph = new Map(files.map((f) => [f, new Set()]));
  const mutatedFromOutside = new Map(); // file → Map of exported name → a file that mutates it through an import
  const helperMutations = new Map(); // file → names it hands to a function that mutates that parameter
  const usedAllow = new Set();

  for (const [file, p] of parsed) {
    const seen = new Set();
    for (const imp of p.imports) {
      if (!imp.spec.startsWith('.')) continue;
      const { target, resolved } = resolveSpecifier(file, imp.spec, known);
      if (resolved) graph.get(file).add(target);
      const v = layerViolation(file, target);
      if (v && !seen.has(target)) {
        seen.add(target);
        const how =
          imp.kind === 'static' ? '' : ` [${imp.kind === 'type' ? 'type-only' : 'dynamic'} import, line ${imp.line}]`;
        violations.push({
          rule: v.rule,
          file,
          detail: `imports ${target}`,
          message: `${file} imports ${target} (${v.why})${how}`,
        });
      }
    }
    // Imported consts mutated here (`cache.set(…)`, `ns.cache.set(…)`) or handed to a helper that mutates its parameter.
    const imported = new Map();
    for (const b of p.bindings) {
      if (!b.spec.startsWith('.')) continue;
      const { target, resolved } = resolveSpecifier(file, b.spec, known);
      if (resolved) imported.set(b.local, { target, name: b.imported });
    }
    const markOutside = (target, name) => {
      if (!mutatedFromOutside.has(target)) mutatedFromOutside.set(target, new Map());
      mutatedFromOutside.get(target).set(name, file);
    };
    const markMutated = (root, props) => {
      const b = imported.get(root);
      if (!b) helperMutations.get(file).add(root);
      else if (b.name !== '*') markOutside(b.target, b.name);
      else if (props.length >= 1) markOutside(b.target, props[0]);
    };
    helperMutations.set(file, new Set());
    for (const m of p.mutated) if (imported.has(m.root)) markMutated(m.root, m.props);
    for (const c of p.calls) {
      let fn;
      if (c.ns === null) {
        const b = imported.get(c.name);
        fn = b ? parsed.get(b.target)?.functions.get(b.name) : p.functions.get(c.name);
      } else {
        const b = imported.get(c.ns);
        fn = b?.name === '*' ? parsed.get(b.target)?.functions.get(c.name) : undefined;
      }
      if (fn?.has(c.index)) markMutated(c.arg, []);
    }
  }

  for (const [file, p] of parsed) {
    const localMutations = new Set([...p.mutated.map((m) => m.root), ...helperMutations.get(file)]);
    const outside = mutatedFromOutside.get(file) ?? new Map();
    for (const d of p.topLevel) {
      // A `const` Map/Set that nothing mutates is a lookup table (a constant); a WeakMap/WeakSet is a cache by nature.
      const what = COLLECTIONS.has(d.init) ? `= new ${d.init}` : `(${d.init === 'other' ? 'value' : d.init})`;
      let detail = null;
      if (d.keyword === 'static')
        detail = `static ${d.readonly ? 'readonly ' : ''}${d.name}${COLLECTIONS.has(d.init) ? ` = new ${d.init}` : ''}`;
      else if (d.keyword !== 'const') detail = `${d.keyword} ${d.name}`;
      else if (d.init === 'WeakMap' || d.init === 'WeakSet') detail = `const ${d.name} ${what}`;
      // A camelCase Map/Set is a cache by the house convention (lookup tables are UPPER_CASE); this also
      // catches caches filled through a helper (`remember(memo, k, v)`), which the mutation scan cannot see.
      else if ((d.init === 'Map' || d.init === 'Set') && !CONSTANT_NAME.test(d.name))
        detail = `const ${d.name} ${what}`;
      else if (localMutations.has(d.name)) detail = `const ${d.name} ${what}, mutated`;
      else if (d.exported && outside.has(d.name)) detail = `const ${d.name} ${what}, mutated in ${outside.get(d.name)}`;
      if (detail && !isAllowed(allowlist, file, d.name, usedAllow)) {
        violations.push({
          rule: 'module-state',
          file,
          line: d.line,
          detail,
          message: `${file}:${d.line} module-level mutable state: ${detail} (give it to an object the composition root owns, or allowlist it in scripts/check-layers.mjs with a reason)`,
        });
      }
    }
  }

  for (const group of cycles(graph)) {
    const loop = exampleLoop(group, graph);
    violations.push({
      rule: 'cycle',
      file: group[0],
      files: group,
      detail: `cycle between ${group.join(', ')}`,
      message: `import cycle between ${group.length} files: ${group.join(', ')} (e.g. ${loop.join(' → ')})`,
    });
  }
  const order = { layer: 0, 'join-method': 1, cycle: 2, 'module-state': 3 };
  violations.sort(
    (a, b) =>
      order[a.rule] - order[b.rule] ||
      a.file.localeCompare(b.file) ||
      (a.line ?? 0) - (b.line ?? 0) ||
      a.detail.localeCompare(b.detail),
  );
  // An allowlist entry for a scanned file that matched nothing is stale (the state went away, or was renamed).
  const staleAllow = allowlist.filter((a) => known.has(a.file) && !usedAllow.has(a));
  return { files: files.length, violations, staleAllow };
}

// ---------------------------------------------------------------------------------------- the baseline

export function readBaseline(file) {
  if (!fs.existsSync(file)) return [];
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  const entries = Array.isArray(json) ? json : json.entries;
  if (!Array.isArray(entries)) throw new Error(`${file}: expected { "entries": [...] }`);
  for (const e of entries) {
    if (typeof e.rule !== 'string' || typeof e.file !== 'string' || typeof e.detail !== 'string')
      throw new Error(`${file}: each entry needs rule, file, detail: ${JSON.stringify(e)}`);
  }
  return entries;
}

const keyOf = (e) => `${e.rule}\0${e.file}\0${e.detail}`;

/**
 * Split violations into new ones and covered ones, and find stale baseline entries. A cycle covered
 * by a larger baselined cycle is not new (the group shrank), but that baseline entry is then stale.
 */
export function compareWithBaseline(violations, baseline) {
  const byKey = new Map(baseline.map((e) => [keyOf(e), e]));
  const used = new Set();
  const fresh = [];
  const shrunk = [];
  for (const v of violations) {
    const k = keyOf(v);
    if (byKey.has(k)) {
      used.add(k);
      continue;
    }
    if (v.rule === 'cycle') {
      const wider = baseline.find(
        (e) => e.rule === 'cycle' && Array.isArray(e.files) && v.files.every((f) => e.files.includes(f)),
      );
      if (wider) {
        shrunk.push({ violation: v, entry: wider });
        continue;
      }
    }
    fresh.push(v);
  }
  const stale = baseline.filter((e) => !used.has(keyOf(e)));
  return { fresh, shrunk, stale, covered: used.size };
}

function writeBaseline(file, entries) {
  const doc = {
    comment:
      'Known violations of the house rules (scripts/check-layers.mjs). This list only shrinks: fix one, then run `node scripts/check-layers.mjs --update-baseline`. See docs/architecture.md.',
    entries: entries.map((e) => ({
      rule: e.rule,
      file: e.file,
      detail: e.detail,
      ...(e.files ? { files: e.files } : {}),
      reason: e.reason ?? DEFAULT_REASON,
    })),
  };
  fs.writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
}

// ------------------------------------------------------------------------------------------------ CLI

/** Runs the check; returns the exit code. `out`/`err` receive whole lines. */
export function run(argv, { out = (l) => console.log(l), err = (l) => console.error(l), cwd = process.cwd() } = {}) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  let root = path.resolve(here, '..');
  let baselineFile = null;
  let update = false;
  let acceptNew = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--root' && argv[i + 1]) root = path.resolve(cwd, argv[++i]);
    else if (a === '--baseline' && argv[i + 1]) baselineFile = path.resolve(cwd, argv[++i]);
    else if (a === '--update-baseline') update = true;
    else if (a === '--accept-new') acceptNew = true;
    else {
      err(`layers: unknown argument ${a}`);
      err('usage: node scripts/check-layers.mjs [--root DIR] [--baseline FILE] [--update-baseline [--accept-new]]');
      return 2;
    }
  }
  baselineFile ??= path.join(root, 'scripts', 'layers-baseline.json');
  if (!fs.existsSync(path.join(root, 'src'))) {
    err(`layers: no src/ under ${root}`);
    return 2;
  }

  let baseline;
  try {
    baseline = readBaseline(baselineFile);
  } catch (e) {
    err(`layers: ${e.message}`);
    return 2;
  }
  const { files, violations, staleAllow } = findViolations(root);
  const { fresh, shrunk, stale } = compareWithBaseline(violations, baseline);
  const rel = path.relative(cwd, baselineFile) || baselineFile;

  if (update) {
    if (fresh.length > 0 && !acceptNew) {
      for (const v of fresh) err(`layers: ${v.message}`);
      err(`layers: ${fresh.length} new violation(s) not added to ${rel}: fix them (the baseline only shrinks)`);
      return 1;
    }
    const current = new Set(violations.map(keyOf));
    const kept = baseline.filter((e) => current.has(keyOf(e)));
    const keptKeys = new Set(kept.map(keyOf));
    // Shrunk cycles replace the wider entry, keeping its reason; new ones only with --accept-new.
    const added = [...shrunk.map((s) => ({ ...s.violation, reason: s.entry.reason })), ...fresh].filter(
      (v) => !keptKeys.has(keyOf(v)),
    );
    const order = new Map(violations.map((v, i) => [keyOf(v), i]));
    const next = [...kept, ...added].sort((a, b) => order.get(keyOf(a)) - order.get(keyOf(b)));
    writeBaseline(baselineFile, next);
    out(`layers: baseline ${rel}: ${next.length} entries (${stale.length} removed, ${added.length} added)`);
    return 0;
  }

  for (const v of fresh) out(`layers: ${v.message}`);
  for (const s of shrunk) out(`layers: ${s.violation.message}: smaller than the baselined ${s.entry.detail}`);
  for (const e of stale)
    out(
      `layers: baseline entry no longer occurs: [${e.rule}] ${e.file}: ${e.detail} — remove it from the baseline (node scripts/check-layers.mjs --update-baseline)`,
    );
  for (const a of staleAllow)
    out(
      `layers: allowlist entry matches nothing: ${a.file} ${a.name} — remove it from MODULE_STATE_ALLOWLIST in scripts/check-layers.mjs`,
    );
  if (fresh.length || stale.length || staleAllow.length) {
    out(
      `layers: ${fresh.length} new violation(s), ${stale.length} stale baseline entr${stale.length === 1 ? 'y' : 'ies'} (rules: docs/architecture.md "House rules")`,
    );
    return 1;
  }
  out(`layers: ok (${files} files, ${baseline.length} baseline entries)`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = run(process.argv.slice(2));
}
