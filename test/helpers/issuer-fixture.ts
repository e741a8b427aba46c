/**
 * One `sigil server start` per describe block, with the standard resources applied, in its own
 * temp dir; stopped and removed afterwards. `fx.issuer` is set once beforeAll has run.
 */
import { afterAll, beforeAll } from 'vitest';
import { applyResources, startIssuer, tempDir, type RunningIssuer } from './cli.js';

export interface IssuerFixture {
  tmp: { path: string; cleanup(): void };
  issuer: RunningIssuer;
}

export function useIssuer(prefix?: string): IssuerFixture {
  const fx = { tmp: tempDir(prefix) } as IssuerFixture;
  beforeAll(async () => {
    fx.issuer = await startIssuer(fx.tmp.path);
    await applyResources(fx.issuer, fx.tmp.path);
  });
  afterAll(async () => {
    await fx.issuer?.stop();
    fx.tmp.cleanup();
  });
  return fx;
}
