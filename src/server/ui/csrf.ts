/**
 * Cross-site request forgery defences for the fleet view's POSTs (issue #18; OWASP CSRF
 * Prevention Cheat Sheet). Three walls, each enough against today's browsers on its own:
 *
 * 1. The session cookie is SameSite=Strict: a cross-site form post arrives without it.
 * 2. The request must come from this origin: Fetch Metadata (`Sec-Fetch-Site`, sent by every
 *    current browser) must say `same-origin`, and an Origin (else Referer) header must name this
 *    very host. Because the pages send `Referrer-Policy: no-referrer`, a browser's same-origin
 *    form post carries `Origin: null` (Fetch standard, "serializing a request origin"), so
 *    "null" is accepted only together with `Sec-Fetch-Site: same-origin`.
 * 3. A synchronizer token, random per session, in a hidden field of every form, compared in
 *    constant time: a page on another origin cannot read it (same-origin policy).
 */
import { SigilError } from '../../errors.js';
import { constantTimeEqual } from '../../util/secret.js';

/** The form field every POST form carries. */
export const CSRF_FIELD = 'csrf';

export interface RequestOrigin {
  /** The Host header the request was sent to. */
  host: string | undefined;
  origin: string | undefined;
  referer: string | undefined;
  /** Fetch Metadata: same-origin, same-site, cross-site or none. */
  fetchSite: string | undefined;
}

/**
 * Refuse a POST that another site made the browser send. A client that sends none of these
 * headers (not a browser: curl) falls through to the token check.
 */
export function checkSameOrigin(r: RequestOrigin): void {
  const refuse = (why: string): never => {
    throw new SigilError('ui_csrf_invalid', `the request comes from another origin (${why.slice(0, 120)})`);
  };
  if (r.fetchSite !== undefined && r.fetchSite !== 'same-origin') refuse(`Sec-Fetch-Site: ${r.fetchSite}`);
  const claimed = r.origin ?? r.referer;
  if (claimed === undefined) return;
  if (claimed === 'null') {
    if (r.fetchSite !== 'same-origin') refuse('Origin: null');
    return;
  }
  let host: string | undefined;
  try {
    const u = new URL(claimed);
    host = u.protocol === 'https:' ? u.host : undefined;
  } catch {
    host = undefined;
  }
  if (!host || !r.host || host.toLowerCase() !== r.host.toLowerCase()) refuse(claimed);
}

/** The form's token must be this session's, byte for byte. */
export function checkCsrfToken(expected: string, presented: unknown): void {
  if (typeof presented !== 'string' || presented.length === 0)
    throw new SigilError('ui_csrf_invalid', 'the form carries no CSRF token; reload the page and try again');
  if (!constantTimeEqual(presented, expected))
    throw new SigilError(
      'ui_csrf_invalid',
      "the form's CSRF token is not this session's; reload the page and try again",
    );
}
