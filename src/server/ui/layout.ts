/** The frame of every fleet-view page: head (local CSS and JS only), navigation, who is signed in, sign-out. */
import { CSRF_FIELD } from './csrf.js';
import { html, type Html } from './html.js';
import type { UiSession } from './session.js';
import type { StaticAssets } from './static.js';

export interface PageFrame {
  title: string;
  /** Which nav entry is current. */
  nav?: 'fleet' | 'audit';
  session?: UiSession;
  assets: StaticAssets;
  trustDomain: string;
  body: Html;
}

export function layout(p: PageFrame): Html {
  const s = p.session;
  const navLink = (key: 'fleet' | 'audit', path: string, label: string): Html =>
    html`<a href="${path}" ${p.nav === key ? html` aria-current="page"` : ''}>${label}</a>`;
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${p.title} · Sigil</title>
        <link rel="icon" href="data:," />
        <link rel="stylesheet" href="${p.assets.url('ui.css')}" />
        <script src="${p.assets.url('ui.js')}" defer></script>
      </head>
      <body>
        <header class="top">
          <span class="brand">Sigil <span class="muted">${p.trustDomain}</span></span>
          ${
            s
              ? html`<nav>${navLink('fleet', '/ui/', 'Fleet')}${navLink('audit', '/ui/audit', 'Audit')}</nav>
                  <form class="signout" method="post" action="/ui/sign-out">
                    <input type="hidden" name="${CSRF_FIELD}" value="${s.csrf}" /><span class="who"
                      >${s.user} <span class="role role-${s.role}">${s.role}</span></span
                    >
                    <button type="submit">Sign out</button>
                  </form>`
              : ''
          }
        </header>
        <main>${p.body}</main>
      </body>
    </html> `;
}
