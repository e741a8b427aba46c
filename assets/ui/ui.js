// Sigil fleet view: progressive enhancement only; every page works without it (issue #18).
// Served from 'self' under script-src 'self' — no inline script, no eval, no network.
'use strict';
document.addEventListener('DOMContentLoaded', () => {
  // Filter selects apply on change (the Filter button stays for keyboards and no-script).
  for (const form of document.querySelectorAll('form.filters')) {
    for (const select of form.querySelectorAll('select')) {
      select.addEventListener('change', () => form.requestSubmit());
    }
  }
  // Locking asks once more: it stops the machine's next renewal.
  for (const form of document.querySelectorAll('form.lock')) {
    form.addEventListener('submit', (e) => {
      const verb = form.action.endsWith('/unlock') ? 'Unlock' : 'Lock';
      if (!window.confirm(`${verb} this instance?`)) e.preventDefault();
    });
  }
});
