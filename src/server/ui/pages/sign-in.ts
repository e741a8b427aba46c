/** The sign-in form and the error page. The token field is a password field: never echoed back, never autocompleted into another site. */
import { html, type Html } from '../html.js';

export function signInPage(o: { next: string; message?: string }): Html {
  return html`<section class="sign-in">
    <h1>Sign in</h1>
    ${o.message ? html`<p class="error" role="alert">${o.message}</p>` : ''}
    <form method="post" action="/ui/sign-in">
      <input type="hidden" name="next" value="${o.next}" />
      <label
        >Credential
        <input type="password" name="token" autocomplete="current-password" required maxlength="200" autofocus
      /></label>
      <button type="submit">Sign in</button>
    </form>
    <p class="muted small">
      Administrators: the contents of <code>DATA_DIR/admin.token</code>. Viewers (read-only): a token from
      <code>sigil server ui-token --name NAME</code>.
    </p>
  </section>`;
}

export function errorPage(o: { status: number; code: string; message: string }): Html {
  return html`<section class="error-page">
    <h1>
      ${o.status === 404 ? 'Not found' : o.status === 403 ? 'Refused' : o.status === 400 ? 'Bad request' : 'Error'}
    </h1>
    <p class="error" role="alert"><code>${o.code}</code> ${o.message}</p>
    <p><a href="/ui/">Back to the fleet</a></p>
  </section>`;
}
