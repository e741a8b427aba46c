/**
 * The issuer through each configured transport, reached and checked the way the agent does it
 * (./probe.ts): the pinned root presented (HTTPS handshake, or the broker's chain / the signed
 * bundle over MQTT), a signed bundle that verifies under it. A wrong `ca_pin` is `pin_mismatch`,
 * and the fix shows how to read the right one on the issuer — never "take what the network
 * says": accepting the presented root unseen would be trust on first use.
 */
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import type { TransportConfig } from '../../agent/config.js';
import { SigilError, toSigilError } from '../../errors.js';
import { spkiPin } from '../../pki/chain.js';
import { fail, ok, NETWORK_TIMEOUT_MS, type Check, type CheckOutcome } from '../types.js';
import type { AgentDoctorContext } from './context.js';

const PIN_COMMAND =
  'openssl x509 -in DATA_DIR/ca/root.pem -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum';

/** The self-signed certificates an HTTPS issuer presents, by pin (to say which CA it is instead). */
function presentedRoots(url: string, timeoutMs: number): Promise<string[]> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const sock = tls.connect({
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: Number(u.port || 443),
      rejectUnauthorized: false,
      timeout: timeoutMs,
    });
    const done = (pins: string[]): void => {
      sock.destroy();
      resolve(pins);
    };
    sock.once('secureConnect', () => {
      const pins: string[] = [];
      const seen = new Set<string>();
      let c: tls.DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
      while (c && c.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        const x = new X509Certificate(c.raw);
        if (x.ca && x.checkIssued(x)) pins.push(spkiPin(x));
        c = c.issuerCertificate;
      }
      done(pins);
    });
    sock.once('timeout', () => done([]));
    sock.once('error', () => done([]));
  });
}

async function diagnose(ctx: AgentDoctorContext, t: TransportConfig, err: unknown): Promise<CheckOutcome> {
  const e = toSigilError(err);
  const what = `${e.code}: ${e.code === 'internal' && !(err instanceof SigilError) ? (err as Error)?.message : e.message}`;
  switch (e.code) {
    case 'pin_mismatch': {
      const pins = t.type === 'https' ? await presentedRoots(t.url, 2_000) : [];
      const seen = pins.length ? ` (${t.url} presents root ${pins.join(', ')})` : '';
      return fail(
        `${what}${seen}`,
        `set ca_pin in ${ctx.configPath} to your issuer's pin, read on the issuer: ${PIN_COMMAND}`,
      );
    }
    case 'issuer_unreachable': {
      if (/CERT_NOT_YET_VALID|CERT_HAS_EXPIRED|certificate is not yet valid|certificate has expired/i.test(e.message)) {
        return fail(
          what,
          "check this machine's clock (timedatectl; chronyc tracking): the issuer's certificate is outside its validity by our clock",
        );
      }
      if (/refused the (subscription|publish)/.test(e.message))
        return fail(
          what,
          `the broker's ACL refuses this agent's session; see the broker:${t.url} check and docs/mqtt.md "What the roles allow"`,
        );
      return fail(
        what,
        t.type === 'https'
          ? `check that the issuer runs and listens at ${t.url} (on the issuer: systemctl status sigil-server; from here: curl -k ${t.url}/healthz), or fix the issuer/transports URL`
          : `check that the broker at ${t.url} is up and that an issuer serves it (sigil server start … --mqtt-url), and the transport's bootstrap credentials`,
      );
    }
    case 'response_invalid':
      return fail(
        what,
        "check this machine's clock (timedatectl) and that the issuer is a Sigil issuer of the pinned CA",
      );
    case 'config_invalid':
      return fail(what, `fix the transport in ${ctx.configPath}`);
    default:
      return fail(what, 'see docs/errors.md for the code');
  }
}

export const issuerCheck = (i: number, t: TransportConfig): Check<AgentDoctorContext> => ({
  name: `issuer:${t.url}`,
  timeoutMs: NETWORK_TIMEOUT_MS,
  async run(ctx) {
    try {
      const p = await ctx.probe(i);
      const how = t.type === 'https' ? 'presented in the TLS handshake' : 'verified through the broker';
      return ok(
        `pinned root (${ctx.cfg.caPin.slice(0, 19)}…, trust domain ${p.trustDomain}) ${how}; signed bundle verifies (${p.receivedAt - p.sentAt} ms)`,
      );
    } catch (e) {
      return diagnose(ctx, t, e);
    }
  },
});
