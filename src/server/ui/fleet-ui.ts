/**
 * The fleet view's state, owned by the IssuerService (issue #18; no module-level state): the
 * sessions, the sign-in throttle, the remembered audit-chain walk and the static assets. Two
 * issuers in one process each have their own.
 */
import type { IssuerContext } from '../issuer.js';
import { AuditChainCheck } from './audit-chain.js';
import { FleetSummary } from './fleet-summary.js';
import { SessionStore, type SessionOptions } from './session.js';
import type { SessionSeal } from './session-seal.js';
import { credentialOnFile, ViewerFile } from './viewer-credentials.js';
import { SignInThrottle, type ThrottleOptions } from './sign-in-throttle.js';
import { StaticAssets } from './static.js';

export interface FleetUiOptions {
  /** Where ui-viewers.json lives (the issuer's data directory). */
  dataDir: string;
  /** Seals the stored sessions (./session-seal.ts): keyed from audit.key, so every issuer of the store shares it. */
  sessionSeal?: SessionSeal;
  session?: Omit<SessionOptions, 'store' | 'seal'>;
  throttle?: ThrottleOptions;
  /** Most time one "verify" press of the audit page may walk the chain (default 2 s). */
  verifyBudgetMs?: number;
  /** How long whole-fleet counts and the charts are kept (defaults 5 s and 30 s; tests use 0). */
  countsTtlMs?: number;
  chartsTtlMs?: number;
}

export class FleetUi {
  readonly sessions: SessionStore;
  /** ui-viewers.json, re-read when it changes (sign-in, and the credential check of every page). */
  readonly viewers: ViewerFile;
  readonly throttle: SignInThrottle;
  readonly chain: AuditChainCheck;
  readonly assets: StaticAssets;
  /** Counts and charts shared by every session, kept briefly (./fleet-summary.ts). */
  readonly summary: FleetSummary;

  constructor(
    readonly ctx: IssuerContext,
    readonly opts: FleetUiOptions,
  ) {
    const now = (): number => ctx.now();
    this.viewers = new ViewerFile(opts.dataDir);
    this.sessions = new SessionStore({
      now,
      ...opts.session,
      store: ctx.stores.uiSessions,
      ...(opts.sessionSeal ? { seal: opts.sessionSeal } : {}),
      credentialLive: (s) => credentialOnFile(s, () => ctx.stores.admin.getAdminTokenHash(), this.viewers),
    });
    this.throttle = new SignInThrottle({ now, ...opts.throttle });
    this.chain = new AuditChainCheck(ctx.stores.audit, now, opts.verifyBudgetMs);
    this.assets = new StaticAssets();
    this.summary = new FleetSummary(() => ctx.stores.fleet, now, {
      countsMs: opts.countsTtlMs ?? 5000,
      chartsMs: opts.chartsTtlMs ?? 30_000,
    });
  }
}
