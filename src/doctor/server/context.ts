/** What the issuer checks share: the data directory and the command line's options. */
export interface IssuerDoctorContext {
  dataDir: string;
  /** `--listen HOST:PORT`: check that the issuer could listen there. */
  listen: string | undefined;
  /** `--full`: walk the whole audit chain and run SQLite's integrity check (slow on big stores). */
  full: boolean;
  now(): number;
}

/** Extract "run: <command>" from a message that carries its own fix (server/data-dir-perms.ts style). */
export function splitFix(message: string): { detail: string; fix: string | undefined } {
  const i = message.lastIndexOf('run: ');
  if (i < 0) return { detail: message, fix: undefined };
  return { detail: message.slice(0, i).replace(/[\s,;]*(then)?\s*$/, ''), fix: message.slice(i + 5) };
}
