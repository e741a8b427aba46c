/**
 * Response headers of every fleet-view response (issue #18).
 *
 * The Content-Security-Policy is the second wall behind escaping (./html.ts): no inline script
 * or style can run, nothing loads from another origin (the view works on an air-gapped network
 * and leaks nothing to a CDN), forms post only here, and no other site can frame the pages
 * (clickjacking: frame-ancestors, with X-Frame-Options for old browsers). Pages are never cached
 * (they show the fleet as it is, and what a viewer saw must not linger in a shared cache).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "style-src 'self'",
  "script-src 'self'",
  "img-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
};

/** Pages and form answers. */
export const NO_STORE = 'no-store';
