/**
 * The agent's Prometheus endpoint (`metrics.listen` in agent.yaml): `/metrics` and `/healthz`.
 * Listening is awaited, so an address already in use is a one-line `config_invalid` at start
 * (issue #12: it used to crash the agent with Node's EADDRINUSE stack trace).
 */
import { createServer, type Server } from 'node:http';
import { SigilError } from '../errors.js';
import type { Agent } from './agent.js';
import { parseListen } from '../util/listen.js';
import { renderAgentMetrics } from './metrics.js';

export async function serveAgentMetrics(listen: string, agent: Agent): Promise<Server> {
  const { host, port } = parseListen(listen, 'metrics.listen');
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      res
        .writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
        .end(renderAgentMetrics(agent.state, Date.now(), agent.link.stats));
    } else if (req.url === '/healthz') {
      const id = agent.state.getIdentity();
      const ok = id !== undefined && id.notAfter > Date.now();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'no valid identity\n');
    } else res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      const why =
        e.code === 'EADDRINUSE'
          ? 'the address is already in use (another process listens there; pick another port)'
          : e.code === 'EACCES'
            ? 'permission denied (ports below 1024 need privileges)'
            : e.code === 'EADDRNOTAVAIL'
              ? 'no such local address'
              : (e.code ?? e.message);
      reject(new SigilError('config_invalid', `metrics.listen ${listen}: ${why}`));
    });
    server.listen(port, host, () => resolve());
  });
  return server;
}
