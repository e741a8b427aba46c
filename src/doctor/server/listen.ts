/**
 * `--listen HOST:PORT`: the issuer could listen there now — the port is free and this user may
 * bind it. A running issuer on that port is reported too (it holds the port), with that hint.
 */
import { createServer } from 'node:net';
import { fail, ok, type Check, type CheckOutcome } from '../types.js';
import type { IssuerDoctorContext } from './context.js';

export const listenCheck = (listen: string): Check<IssuerDoctorContext> => ({
  name: 'listen',
  timeoutMs: 5_000,
  async run(): Promise<CheckOutcome> {
    const { parseListen } = await import('../../util/listen.js');
    const { host, port } = parseListen(listen);
    return new Promise<CheckOutcome>((resolve) => {
      const srv = createServer();
      srv.once('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'EADDRINUSE')
          resolve(
            fail(
              `${listen} is in use (if that is this issuer running, all is well)`,
              `find the holder: ss -ltnp 'sport = :${port}'; stop it, or choose another --listen`,
            ),
          );
        else if (e.code === 'EACCES')
          resolve(
            fail(
              `${listen}: this user may not bind port ${port}`,
              `use a port ≥ 1024, or grant it: setcap cap_net_bind_service=+ep $(command -v node) (or systemd AmbientCapabilities=CAP_NET_BIND_SERVICE)`,
            ),
          );
        else if (e.code === 'EADDRNOTAVAIL')
          resolve(
            fail(
              `${listen}: ${host} is not an address of this machine`,
              'listen on an address of this machine (ip -br addr), or 0.0.0.0',
            ),
          );
        else resolve(fail(`cannot listen on ${listen}: ${e.code ?? e.message}`, 'choose another --listen'));
      });
      srv.listen({ host, port, exclusive: true }, () =>
        srv.close(() => resolve(ok(`${listen} is free and this user may bind it`))),
      );
    });
  },
});
