/**
 * SIGHUP for `sigil server start` (`systemctl reload`: read the credential keys again,
 * server/key-reload.ts). Caught from the moment the CLI runs, not only once the issuer is up:
 * SIGHUP's default action ends the process, and systemd does not restart a unit that died of it.
 * A reload asked before the issuer is up is done once it is.
 */
let reloadSignal: { handler?: () => void; asked: boolean } | undefined;

/** Start catching SIGHUP (idempotent). */
export function catchReloadSignal(): void {
  if (reloadSignal) return;
  const s: { handler?: () => void; asked: boolean } = { asked: false };
  reloadSignal = s;
  process.on('SIGHUP', () => {
    if (s.handler) s.handler();
    else s.asked = true;
  });
}

/** What a SIGHUP does from now on; runs it at once if one came before. */
export function onReloadSignal(fn: () => void): void {
  catchReloadSignal();
  const s = reloadSignal!;
  s.handler = fn;
  if (s.asked) {
    s.asked = false;
    fn();
  }
}
