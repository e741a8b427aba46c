/**
 * HTML for the fleet view (issue #18), built with ONE escaping rule: every value interpolated
 * into an `html` template is escaped by `escapeHtml` unless it is already `Html` (the output of
 * another `html` template). Bot names, instance ids and facts come from agents and are hostile
 * (a bot named `<script>…` must render as text); the Content-Security-Policy (./headers.ts) is
 * the second wall, not the first.
 *
 * Attribute values are always written in double quotes, and escapeHtml escapes both quote
 * characters, so the same function is safe in text and in quoted attributes. URLs are built by
 * `href()` from fixed paths and encodeURIComponent-ed parts, never taken from data whole (no
 * `javascript:` can appear).
 */

/** Markup that is already safe: only `html` and `raw` make one. */
export class Html {
  readonly #text: string;
  constructor(text: string) {
    this.#text = text;
  }
  toString(): string {
    return this.#text;
  }
}

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** The one escaping function: text and double- or single-quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

type Part = Html | string | number | boolean | null | undefined | readonly Part[];

function render(v: Part): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof Html) return v.toString();
  if (Array.isArray(v)) return (v as readonly Part[]).map(render).join('');
  return escapeHtml(String(v));
}

/**
 * Tagged template: literal parts are markup, every interpolated value is escaped. The literal
 * parts' indentation (prettier lays the templates out as HTML) is dropped: a newline stays, so
 * what the browser renders is the same and a 50-row page is ~15 KB lighter. The pages have no
 * <pre> or <textarea> whose literal whitespace would matter.
 */
export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0]!.replace(INDENT, '\n');
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!.replace(INDENT, '\n');
  return new Html(out);
}

const INDENT = /\n[ \t]+/g;

/** Markup written by this module's callers as a constant (an SVG path built from numbers). Never pass data. */
export function trusted(markup: string): Html {
  return new Html(markup);
}

/** A link under /ui/ with query parameters (empty ones left out), as an escaped attribute value later. */
export function href(path: string, query: Record<string, string | number | undefined> = {}): string {
  const q = Object.entries(query)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  return q ? `${path}?${q}` : path;
}

/** `/ui/machine/<id>` with the id as one path segment. */
export function machineHref(id: string): string {
  return `/ui/machine/${encodeURIComponent(id)}`;
}
