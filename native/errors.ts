/**
 * What native/ reports when C cannot be reached. native/ is a leaf: it imports nothing from src/
 * (so it builds first, on its own), and the src/ code that calls it turns these into coded
 * SigilErrors (`config_invalid` for a missing library: the fix is an install, not a retry).
 */

export type NativeFailure =
  /** A shared library (or the koffi package) cannot be loaded. */
  | 'library_missing'
  /** The platform has no such facility (SO_PEERCRED outside Linux, an unknown CPU's constants). */
  | 'unsupported_platform'
  /** The C call answered with an error (errno, a TSS2_RC). */
  | 'call_failed';

export class NativeError extends Error {
  override readonly name = 'NativeError';
  readonly failure: NativeFailure;
  /** The library a `library_missing` failure is about (soname or package name). */
  readonly library: string | undefined;

  constructor(failure: NativeFailure, message: string, opts: { library?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.failure = failure;
    this.library = opts.library;
  }
}
