/** A fleet-view page as a response: the frame around the body, HTML, never cached. */
import type { FastifyReply } from 'fastify';
import type { FleetUi } from './fleet-ui.js';
import { NO_STORE } from './headers.js';
import type { Html } from './html.js';
import { layout, type PageFrame } from './layout.js';

export function sendPage(
  ui: FleetUi,
  reply: FastifyReply,
  frame: Omit<PageFrame, 'assets' | 'trustDomain'>,
  status = 200,
): FastifyReply {
  const page: Html = layout({ ...frame, assets: ui.assets, trustDomain: ui.ctx.ca.trustDomain });
  return reply.code(status).header('cache-control', NO_STORE).type('text/html; charset=utf-8').send(page.toString());
}
