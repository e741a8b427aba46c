// The TCTI transport (libtss2-tctildr through koffi) against peers that stop answering: every
// native call runs off the event loop and every wait has a deadline (src/tpm/transport/tcti.ts).
// Before, Tss2_TctiLdr_Initialize ran on the event loop and the swtpm/mssim TCTIs wait for the
// answer to a control command there: a peer that never answered froze the process for good —
// timers, signal handlers and vitest's own timeout included.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Tss2TctiLdr } from '../../../native/tss2-tctildr.js';
import { MAX_ABANDONED, TctiTransport } from '../../../src/tpm/transport/tcti.js';

interface Peer {
  port: number;
  /** Bytes received on the data port (port) and on the control port (port + 1). */
  got: { data: number; ctrl: number };
  close(): Promise<void>;
}

const peers: Peer[] = [];
afterEach(async () => {
  // Closing the peers' sockets lets the native calls still waiting on them return.
  await Promise.all(peers.splice(0).map((p) => p.close()));
});

function listen(server: net.Server, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
}

/**
 * Two listeners on consecutive ports, as the swtpm/mssim TCTIs expect (data, control). The data
 * port never answers; the control port answers each command with TPM_SUCCESS when `ctrlAnswers`.
 */
async function peer(ctrlAnswers: boolean): Promise<Peer> {
  const sockets = new Set<net.Socket>();
  const got = { data: 0, ctrl: 0 };
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  for (let attempt = 0; attempt < 50; attempt++) {
    const data = net.createServer((s) => {
      track(s);
      s.on('data', (d) => (got.data += d.length));
    });
    const ctrl = net.createServer((s) => {
      track(s);
      s.on('data', (d) => {
        got.ctrl += d.length;
        if (ctrlAnswers) s.write(Buffer.alloc(4)); // TPM_SUCCESS
      });
    });
    if (!(await listen(data, 0))) continue;
    const port = (data.address() as net.AddressInfo).port;
    if (!(await listen(ctrl, port + 1))) {
      data.close();
      continue;
    }
    const p: Peer = {
      port,
      got,
      close: async () => {
        for (const s of sockets) s.destroy();
        await Promise.all([data, ctrl].map((srv) => new Promise((r) => srv.close(r))));
      },
    };
    peers.push(p);
    return p;
  }
  throw new Error('no two consecutive free ports');
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Counts timer ticks while `work` runs: a blocked event loop ticks none. */
async function ticksDuring<T>(work: Promise<T>): Promise<{ ticks: number; result: PromiseSettledResult<T> }> {
  let ticks = 0;
  const t = setInterval(() => ticks++, 20);
  const [result] = await Promise.allSettled([work]);
  clearInterval(t);
  return { ticks, result: result! };
}

describe('TCTI transport deadlines', () => {
  for (const kind of ['swtpm', 'mssim'] as const) {
    it(`${kind}: a peer that accepts and never answers fails initialisation with tpm_unavailable, the event loop running meanwhile`, async () => {
      const p = await peer(false);
      const started = Date.now();
      const { ticks, result } = await ticksDuring(
        TctiTransport.open(`${kind}:host=127.0.0.1,port=${p.port}`, { initTimeoutMs: 600 }),
      );
      expect(result.status).toBe('rejected');
      const err = (result as PromiseRejectedResult).reason as { code?: string; message?: string };
      expect(err.code).toBe('tpm_unavailable');
      expect(err.message).toContain('did not initialise within 600 ms');
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(p.got.ctrl + p.got.data).toBeGreaterThan(0); // the TCTI did reach the peer and wait on it
      expect(ticks).toBeGreaterThanOrEqual(10);
    });
  }

  // mssim honours receive's timeout (TRY_AGAIN after each one-second slice), so its thread comes
  // back by itself; Debian's swtpm TCTI ignores it and blocks until the peer closes, so that call
  // is given up on (counted as abandoned) a grace period after the deadline.
  for (const kind of ['mssim', 'swtpm'] as const) {
    it(`${kind}: a TPM that stops answering fails the command with tpm_unavailable, and the transport is retired`, async () => {
      const p = await peer(true);
      const tpm = await TctiTransport.open(`${kind}:host=127.0.0.1,port=${p.port}`, { timeoutMs: 600 });
      const loader = Tss2TctiLdr.load();
      // TPM2_GetRandom(8) (Part 3 §16.1): sent, never answered.
      const getRandom = Buffer.from('80010000000c0000017b0008', 'hex');
      const started = Date.now();
      const { ticks, result } = await ticksDuring(tpm.send(getRandom));
      const took = Date.now() - started;
      expect(result.status).toBe('rejected');
      expect((result as PromiseRejectedResult).reason).toMatchObject({
        code: 'tpm_unavailable',
        message: expect.stringContaining('did not answer within 600 ms'),
      });
      expect(p.got.data).toBeGreaterThanOrEqual(getRandom.length);
      expect(ticks).toBeGreaterThanOrEqual(10);
      await expect(tpm.send(getRandom)).rejects.toMatchObject({
        code: 'tpm_unavailable',
        message: expect.stringContaining('closed'),
      });
      if (kind === 'mssim') {
        expect(took).toBeLessThan(1_500);
        await until(() => loader.inFlight === 0, 3_000); // the peer still silent
        expect(loader.abandoned).toBe(0);
      } else {
        // Deadline + one slice + 1 s of grace = 2.6 s of timers; a timer can fire a millisecond
        // early by Date.now() (libuv's loop clock is in whole ms): 2,599 was seen on a fresh clone.
        expect(took).toBeGreaterThanOrEqual(2_550);
        expect(took).toBeLessThan(5_000);
        expect(loader.abandoned).toBe(1);
        await p.close();
        await until(() => loader.abandoned === 0 && loader.inFlight === 0, 3_000);
      }
      await tpm.close();
    });
  }

  it(`refuses to start a TCTI once ${MAX_ABANDONED} initialisations given up on still hold threads`, async () => {
    const loader = Tss2TctiLdr.load();
    await until(() => loader.abandoned === 0, 5_000); // earlier tests' calls, released by afterEach
    const p = await peer(false);
    const tcti = `swtpm:host=127.0.0.1,port=${p.port}`;
    for (let i = 0; i < MAX_ABANDONED; i++)
      await expect(TctiTransport.open(tcti, { initTimeoutMs: 300 })).rejects.toMatchObject({ code: 'tpm_unavailable' });
    expect(loader.abandoned).toBe(MAX_ABANDONED);
    const reached = p.got.ctrl;
    await expect(TctiTransport.open(tcti, { initTimeoutMs: 300 })).rejects.toMatchObject({
      code: 'tpm_unavailable',
      message: expect.stringContaining(`${MAX_ABANDONED} earlier calls into the TPM software stack never returned`),
    });
    expect(p.got.ctrl).toBe(reached); // refused before a new call went out
    // Once the peer goes away the stuck calls return and the threads are free again.
    await p.close();
    await until(() => loader.abandoned === 0, 5_000);
    await expect(TctiTransport.open(tcti, { initTimeoutMs: 300 })).rejects.toMatchObject({
      code: 'tpm_unavailable',
      message: expect.stringContaining('could not be initialised'),
    });
  });
});
