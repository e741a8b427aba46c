// listensOn (test/helpers/port-owner.ts): who really listens on a port, read from /proc.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { listensOn } from '../../helpers/port-owner.js';

describe('listensOn', () => {
  it('is true for the process holding the listening socket and false for any other', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    const child = spawn(
      process.execPath,
      ['-e', "require('net').createServer().listen(0,'127.0.0.1',function(){console.log(this.address().port)})"],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const childPort = Number(
        await new Promise<string>((r) => child.stdout!.once('data', (d: Buffer) => r(d.toString()))),
      );
      expect(listensOn(process.pid, port)).toBe(true);
      expect(listensOn(child.pid!, port)).toBe(false);
      expect(listensOn(child.pid!, childPort)).toBe(true);
      expect(listensOn(process.pid, childPort)).toBe(false);
      // A connected (not listening) socket on the port does not count.
      const c = net.connect(childPort, '127.0.0.1');
      await new Promise((r) => c.once('connect', r));
      expect(listensOn(process.pid, childPort)).toBe(false);
      c.destroy();
    } finally {
      child.kill();
      srv.close();
    }
    expect(listensOn(process.pid, port)).toBe(false);
  });
});
