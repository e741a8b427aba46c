/**
 * The root CRL as the agent keeps it (setting ROOT_CRL_SETTING): the newest CRL the pinned root
 * signed that reached the agent in a signed `bundle` answer (./trust-check.ts). The agent's
 * response verifier refuses answers signed under an intermediate it lists
 * (protocol/response-verifier.ts `revocations`): after `sigil server rotate-intermediate
 * --revoke-old`, the thief of the old intermediate key cannot answer agents as the issuer (a
 * network position, or the MQTT broker) once they have it.
 *
 * Never replaced by an older one (cRLNumber, else thisUpdate), never dropped: a bundle answer
 * without a CRL (an older issuer, or a forger who withholds it) changes nothing. The serials are
 * stored with the DER they were verified from; the agent's state database is trusted (0600).
 */
import { X509Certificate } from 'node:crypto';
import { serialKey } from '../pki/serial-key.js';
import type { AgentState, Identity } from './state/index.js';

export const ROOT_CRL_SETTING = 'root_crl';

interface Stored {
  der: string;
  serials: string[];
  crl_number: string | null;
  this_update: number;
}

export class RootCrlState {
  readonly #state: Pick<AgentState, 'getSetting' | 'setSetting'>;
  #raw: string | undefined;
  #serials: ReadonlySet<string> = new Set();
  /** The CA serials of the last identity chain asked about (listsIssuerOf). */
  #cas: { key: string; serials: string[] } | undefined;

  constructor(state: Pick<AgentState, 'getSetting' | 'setSetting'>) {
    this.#state = state;
  }

  /**
   * Whether the kept CRL lists an intermediate of this identity's chain: the root itself says the
   * CA that issued it is revoked, so the identity is over — as when its renewal is refused
   * `issuer_revoked`, without waiting for that renewal (a docs walk: a cron'd agent kept
   * reporting a healthy identity for half its lifetime after taking the CRL). Only the chain's CA
   * certificates are looked up (the root's namespace: a leaf's serial is its intermediate's), and
   * not a self-signed one.
   */
  listsIssuerOf(id: Pick<Identity, 'chainPem'>): boolean {
    const revoked = this.revoked();
    if (revoked.size === 0 || id.chainPem.length < 2) return false;
    const cas = id.chainPem.slice(1).join('\n');
    if (this.#cas?.key !== cas) {
      const serials: string[] = [];
      for (const pem of id.chainPem.slice(1)) {
        try {
          const c = new X509Certificate(pem);
          if (c.issuer !== c.subject) serials.push(serialKey(c.serialNumber));
        } catch {
          // Not a certificate: nothing of it can be listed.
        }
      }
      this.#cas = { key: cas, serials };
    }
    return this.#cas.serials.some((s) => revoked.has(s));
  }

  /** The serials the kept CRL lists (empty without one). Cheap: re-parsed only when the setting changed. */
  revoked(): ReadonlySet<string> {
    const raw = this.#state.getSetting(ROOT_CRL_SETTING);
    if (raw !== this.#raw) {
      this.#raw = raw;
      this.#serials = new Set(read(raw)?.serials ?? []);
    }
    return this.#serials;
  }

  /**
   * A CRL from a verified bundle answer (base64 DER): kept when the pinned root signed it and it is
   * newer than the kept one. Returns whether it was kept; throws when it is not the root's CRL.
   */
  async offer(b64: string, rootDer: Buffer, servedBy: readonly string[] = []): Promise<boolean> {
    const { parseRootCrl } = await import('../pki/root-crl.js');
    const der = Buffer.from(b64, 'base64');
    const crl = await parseRootCrl(der, rootDer);
    // A CRL that revokes the very issuer serving it is a mistake (an issuer whose intermediate is
    // revoked stops serving): kept, it would make the agent refuse every later answer of that
    // issuer, a corrected CRL included (it comes signed under the same intermediate). Review.
    const listed = servedBy.filter((s) => crl.serials.has(s));
    if (listed.length > 0)
      throw new Error(
        `the root CRL lists the intermediate of the issuer that served it (serial ${listed.join(', ')}); not kept`,
      );
    const kept = read(this.#state.getSetting(ROOT_CRL_SETTING));
    if (kept) {
      const newer =
        crl.crlNumber !== undefined && kept.crl_number !== null
          ? crl.crlNumber > BigInt(kept.crl_number)
          : crl.thisUpdate > kept.this_update;
      if (!newer) return false;
    }
    const value: Stored = {
      der: b64,
      serials: [...crl.serials],
      crl_number: crl.crlNumber?.toString() ?? null,
      this_update: crl.thisUpdate,
    };
    this.#state.setSetting(ROOT_CRL_SETTING, JSON.stringify(value));
    return true;
  }
}

function read(raw: string | undefined): Stored | undefined {
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as Stored;
    return Array.isArray(v.serials) ? v : undefined;
  } catch {
    return undefined;
  }
}
