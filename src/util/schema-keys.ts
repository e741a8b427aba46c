/**
 * The keys a zod (v4) schema knows at a path of the input, for "did you mean" on a strict
 * object's unrecognized key (protocol/messages.ts parseWith). Reads the schema definitions
 * (`_zod.def`), so it follows objects, arrays, records, unions (every option: the key may
 * belong to any), optionals/defaults and transforms (pipes) without the caller naming them.
 */
import type * as core from 'zod/v4/core';

interface Def {
  type: string;
  shape?: Record<string, unknown>;
  catchall?: unknown;
  element?: unknown;
  items?: unknown[];
  valueType?: unknown;
  options?: unknown[];
  innerType?: unknown;
  in?: unknown;
  out?: unknown;
  left?: unknown;
  right?: unknown;
  getter?: () => unknown;
}

const defOf = (s: unknown): Def | undefined => (s as { _zod?: { def?: Def } } | undefined)?._zod?.def;

/** Deep enough for any config we have; also stops a recursive (lazy) schema. */
const MAX_DEPTH = 64;

/** Object schemas the input at `path` may be validated by. */
function objectsAt(schema: unknown, path: ReadonlyArray<PropertyKey>, depth = 0): Def[] {
  const d = defOf(schema);
  if (!d || depth > MAX_DEPTH) return [];
  const next = (s: unknown, rest: ReadonlyArray<PropertyKey>): Def[] => objectsAt(s, rest, depth + 1);
  switch (d.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'catch':
    case 'readonly':
    case 'nonoptional':
      return next(d.innerType, path);
    case 'pipe':
      // A transform's input side is what the user wrote.
      return next(d.in, path);
    case 'lazy':
      return d.getter ? next(d.getter(), path) : [];
    case 'union':
      return (d.options ?? []).flatMap((o) => next(o, path));
    case 'intersection':
      return [...next(d.left, path), ...next(d.right, path)];
    default:
  }
  if (path.length === 0) return d.type === 'object' ? [d] : [];
  const [head, ...rest] = path;
  switch (d.type) {
    case 'object': {
      const field = typeof head === 'string' && d.shape && Object.hasOwn(d.shape, head) ? d.shape[head] : d.catchall;
      return field ? next(field, rest) : [];
    }
    case 'array':
      return next(d.element, rest);
    case 'tuple':
      return typeof head === 'number' && d.items?.[head] ? next(d.items[head], rest) : [];
    case 'record':
      return next(d.valueType, rest);
    default:
      return [];
  }
}

/** Every key an object at `path` of the input may have, by `schema`. */
export function knownKeysAt(schema: core.$ZodType, path: ReadonlyArray<PropertyKey>): Set<string> {
  return new Set(objectsAt(schema, path).flatMap((d) => Object.keys(d.shape ?? {})));
}
