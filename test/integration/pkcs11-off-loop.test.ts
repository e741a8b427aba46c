/**
 * PKCS#11 signatures off the event loop. A network HSM or a smart card takes tens to hundreds of
 * milliseconds per C_Sign; made on the event loop, that stalls every timer, renewal and Workload
 * API client of the agent for as long. Attack: a local user who can slow the token (a busy smart
 * card reader, a saturated HSM) freezes the agent's other work.
 *
 * Real SoftHSM2 behind a small PKCS#11 module of the test's own (test/fixtures/pkcs11-slow), built
 * here with cc: it forwards everything, delays C_Sign and records which thread called it.
 */
import { execFileSync } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPkcs11Signer, Pkcs11Signer } from '../../src/keystore/index.js';
import { isModuleLoaded, isModuleThreaded } from '../../src/keystore/pkcs11/module.js';
import { tempDir } from '../helpers/cli.js';
import { initSoftHsmToken, SOFTHSM_MODULE, type SoftHsmToken } from '../helpers/softhsm.js';

const repo = join(import.meta.dirname, '../..');
const tmp = tempDir('sigil-pkcs11-slow-');
const shim = join(tmp.path, 'slow-pkcs11.so');
const calls = join(tmp.path, 'c_sign-threads.log');
const DELAY_MS = 600;
let token: SoftHsmToken;

beforeAll(() => {
  execFileSync('cc', [
    '-shared',
    '-fPIC',
    '-Wall',
    '-Werror',
    '-I',
    join(repo, 'node_modules/pkcs11js/includes/pkcs11'),
    '-o',
    shim,
    join(repo, 'test/fixtures/pkcs11-slow/slow-sign.c'),
    '-ldl',
  ]);
  token = initSoftHsmToken(tmp.path);
  // Read by the shim's C code (getenv): node's process.env writes through to the C environment.
  process.env.SIGIL_SLOW_PKCS11_TARGET = SOFTHSM_MODULE;
  process.env.SIGIL_SLOW_PKCS11_MS = String(DELAY_MS);
  process.env.SIGIL_SLOW_PKCS11_LOG = calls;
});
afterEach(() => {
  rmSync(calls, { force: true });
  delete process.env.SIGIL_SLOW_PKCS11_NO_LOCK;
  delete process.env.SIGIL_SLOW_PKCS11_GEN_MS;
});
afterAll(() => tmp.cleanup());

const lines = (): string[] =>
  readFileSync(calls, 'utf8')
    .split('\n')
    .filter((l) => l !== '');
/** Where each C_Sign was called: "main" or "thread". */
const threadsOfCalls = (): string[] => lines().filter((l) => !l.startsWith('keygen'));
/** Where each C_GenerateKeyPair was called. */
const threadsOfKeygens = (): string[] => lines().filter((l) => l.startsWith('keygen'));

function generate(): Pkcs11Signer {
  return Pkcs11Signer.generate({ module: shim, tokenLabel: token.label, pinFile: token.pinFile });
}

/** The longest pause between ticks of a 10 ms interval while `work` runs: how long the event loop was held. */
async function longestStall<T>(work: () => Promise<T>): Promise<{ result: T; stallMs: number; tookMs: number }> {
  let last = performance.now();
  let stallMs = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 10);
  const t0 = performance.now();
  try {
    const result = await work();
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    return { result, stallMs, tookMs: now - t0 };
  } finally {
    clearInterval(tick);
  }
}

function verifies(signer: Pkcs11Signer, data: Buffer, sig: Buffer): boolean {
  return verify('sha256', data, createPublicKey({ key: signer.publicKeySpki(), format: 'der', type: 'spki' }), sig);
}

describe('PKCS#11 signatures off the event loop', () => {
  it('a slow C_Sign runs on a worker thread: the event loop keeps ticking, and the signature verifies', async () => {
    const signer = generate();
    try {
      expect(isModuleThreaded(shim)).toBe(true);
      const data = Buffer.from('renewal request');
      const { result, stallMs, tookMs } = await longestStall(() => signer.sign(data));
      expect(verifies(signer, data, result)).toBe(true);
      expect(tookMs).toBeGreaterThanOrEqual(DELAY_MS);
      expect(threadsOfCalls()).toEqual(['thread']);
      // On the event loop the interval would have waited the whole delay.
      expect(stallMs).toBeLessThan(DELAY_MS / 2);
    } finally {
      signer.close();
    }
  });

  it('signatures asked for at once are made one after another on the session, each verifying', async () => {
    const signer = generate();
    try {
      const data = [0, 1, 2].map((i) => Buffer.from(`request ${i}`));
      // Without the queue the second C_SignInit meets the first's active operation: CKR_OPERATION_ACTIVE.
      const sigs = await Promise.all(data.map((d) => signer.sign(d)));
      sigs.forEach((sig, i) => expect(verifies(signer, data[i]!, sig)).toBe(true));
      expect(threadsOfCalls()).toEqual(['thread', 'thread', 'thread']);
    } finally {
      signer.close();
    }
  });

  it('close() during a signature lets it finish, refuses the ones queued behind it, then releases the module', async () => {
    const signer = generate();
    const first = signer.sign(Buffer.from('in flight'));
    const queued = signer.sign(Buffer.from('queued'));
    await new Promise((r) => setTimeout(r, DELAY_MS / 4)); // the first is inside C_Sign now
    signer.close();
    expect(isModuleLoaded(shim)).toBe(true); // the session is still the first signature's
    expect(verifies(signer, Buffer.from('in flight'), await first)).toBe(true);
    await expect(queued).rejects.toThrow(/used after close/);
    expect(isModuleLoaded(shim)).toBe(false);
    await expect(signer.sign(Buffer.from('later'))).rejects.toThrow(/used after close/);
  });

  it.each([
    ['CKR_CANT_LOCK', '1'],
    ['CKR_ARGUMENTS_BAD', 'args'],
  ])('a module that refuses to lock (%s) is initialised plainly and signed with on the event loop', async (_, how) => {
    process.env.SIGIL_SLOW_PKCS11_NO_LOCK = how;
    process.env.SIGIL_SLOW_PKCS11_MS = '0';
    const signer = generate();
    try {
      expect(isModuleThreaded(shim)).toBe(false);
      const data = Buffer.from('single-threaded module');
      expect(verifies(signer, data, await signer.sign(data))).toBe(true);
      expect(threadsOfCalls()).toEqual(['main']);
    } finally {
      signer.close();
      process.env.SIGIL_SLOW_PKCS11_MS = String(DELAY_MS);
    }
  });
  it('a slow key generation for the agent (createPkcs11Signer) runs on a worker thread too', async () => {
    process.env.SIGIL_SLOW_PKCS11_GEN_MS = String(DELAY_MS);
    const { result, stallMs, tookMs } = await longestStall(() =>
      createPkcs11Signer({ module: shim, tokenLabel: token.label, pinFile: token.pinFile, keyLabel: 'rotated' }),
    );
    try {
      expect(tookMs).toBeGreaterThanOrEqual(DELAY_MS);
      expect(threadsOfKeygens()).toEqual(['keygen thread']);
      expect(stallMs).toBeLessThan(DELAY_MS / 2);
      expect(result.signer.exportable).toBe(false);
      const data = Buffer.from('signed by the new key');
      expect(verifies(result.signer as Pkcs11Signer, data, await result.signer.sign(data))).toBe(true);
    } finally {
      result.signer.close?.();
    }
  });

  it('Pkcs11Signer.generate (for tools) stays on the calling thread', () => {
    const signer = generate();
    signer.close();
    expect(threadsOfKeygens()).toEqual(['keygen main']);
  });
});
