/**
 * @peculiar/x509 resolves its algorithms through tsyringe, which refuses to load without the
 * Reflect metadata API (normally the `reflect-metadata` package, not a dependency of Sigil).
 * This stand-in implements the four functions tsyringe and tslib's __metadata use. Import it
 * before @peculiar/x509.
 */
const R = Reflect as unknown as Record<string, unknown>;
if (typeof R.getMetadata !== 'function') {
  const store = new WeakMap<object, Map<unknown, unknown>>();
  const own = (k: unknown, t: object): unknown => store.get(t)?.get(k);
  const define = (k: unknown, v: unknown, t: object): void => {
    if (!store.has(t)) store.set(t, new Map());
    store.get(t)!.set(k, v);
  };
  R.defineMetadata = define;
  R.getOwnMetadata = own;
  R.getMetadata = (k: unknown, t: object): unknown => {
    for (let o: object | null = t; o !== null; o = Object.getPrototypeOf(o) as object | null) {
      const v = own(k, o);
      if (v !== undefined) return v;
    }
    return undefined;
  };
  R.metadata = (k: unknown, v: unknown) => (t: object) => define(k, v, t);
}
export {};
