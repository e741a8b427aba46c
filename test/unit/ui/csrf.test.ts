import { describe, expect, it } from 'vitest';
import { checkCsrfToken, checkSameOrigin } from '../../../src/server/ui/csrf.js';

const code = (f: () => void): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return (e as { code: string }).code;
  }
};

describe('fleet view CSRF checks', () => {
  it('accepts the session token only', () => {
    expect(code(() => checkCsrfToken('abc123', 'abc123'))).toBeUndefined();
    expect(code(() => checkCsrfToken('abc123', 'abc124'))).toBe('ui_csrf_invalid');
    expect(code(() => checkCsrfToken('abc123', 'abc12'))).toBe('ui_csrf_invalid');
    expect(code(() => checkCsrfToken('abc123', undefined))).toBe('ui_csrf_invalid');
    expect(code(() => checkCsrfToken('abc123', ''))).toBe('ui_csrf_invalid');
    expect(code(() => checkCsrfToken('abc123', ['abc123']))).toBe('ui_csrf_invalid');
  });

  const base = { host: 'issuer.example:8443', origin: undefined, referer: undefined, fetchSite: undefined };

  it('accepts a same-origin browser post (Origin: null under no-referrer, with Sec-Fetch-Site)', () => {
    expect(
      code(() => checkSameOrigin({ ...base, origin: 'https://issuer.example:8443', fetchSite: 'same-origin' })),
    ).toBeUndefined();
    expect(code(() => checkSameOrigin({ ...base, origin: 'null', fetchSite: 'same-origin' }))).toBeUndefined();
    // Not a browser: no headers at all; the token decides.
    expect(code(() => checkSameOrigin(base))).toBeUndefined();
  });

  it('refuses another origin, another site, and a bare Origin: null', () => {
    expect(code(() => checkSameOrigin({ ...base, origin: 'https://evil.example' }))).toBe('ui_csrf_invalid');
    expect(code(() => checkSameOrigin({ ...base, origin: 'https://issuer.example:9999' }))).toBe('ui_csrf_invalid');
    expect(code(() => checkSameOrigin({ ...base, origin: 'http://issuer.example:8443' }))).toBe('ui_csrf_invalid');
    expect(code(() => checkSameOrigin({ ...base, fetchSite: 'cross-site' }))).toBe('ui_csrf_invalid');
    expect(code(() => checkSameOrigin({ ...base, fetchSite: 'same-site', origin: 'null' }))).toBe('ui_csrf_invalid');
    expect(code(() => checkSameOrigin({ ...base, origin: 'null' }))).toBe('ui_csrf_invalid');
    expect(code(() => checkSameOrigin({ ...base, referer: 'https://evil.example/x' }))).toBe('ui_csrf_invalid');
    expect(code(() => checkSameOrigin({ ...base, origin: 'not a url' }))).toBe('ui_csrf_invalid');
  });
});
