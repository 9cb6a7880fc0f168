// Public status-list endpoints for gateways that verify tokens offline (draft-ietf-oauth-status-list):
//   GET /status-lists           every live list (the aggregation endpoint in discovery)
//   GET /status-lists/{id}      a list's signed status list token (application/statuslist+jwt)
//   GET /status-lists/events    Server-Sent Events: which lists changed, as soon as they change
import { EventEmitter } from 'node:events';
import type { Context, Next } from 'koa';
import { PassThrough } from 'node:stream';
import { statusListPath, type StatusListPublisher } from '../oauth/status-list.js';
import { sendError } from './http-errors.js';

const MAX_STREAMS = 1000;
const KEEPALIVE_MS = 15_000;

/** Announces changed lists (undefined: possibly any list) to the stream's subscribers. */
export class StatusChanges extends EventEmitter {
  announce(listIds: string[] | undefined): void {
    this.emit('change', listIds);
  }
}

export function statusListRoutes(deps: { issuer: string; ttlSeconds: number; publisher: StatusListPublisher; changes: StatusChanges }) {
  let streams = 0;
  const uri = (id: string) => `${deps.issuer}${statusListPath(id)}`;

  async function stream(ctx: Context) {
    if (streams >= MAX_STREAMS) return sendError(ctx, 503, 'temporarily_unavailable', 'too many open status streams', { 'Retry-After': '5' });
    streams++;
    const out = new PassThrough();
    const send = (event: string, data: unknown) => out.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    const onChange = async (listIds: string[] | undefined) => {
      const lists = listIds ?? (await deps.publisher.listIds().catch(() => []));
      send('status_lists_changed', { status_lists: lists.map(uri), at: Math.floor(Date.now() / 1000) });
    };
    const keepalive = setInterval(() => out.write(': keepalive\n\n'), KEEPALIVE_MS);
    deps.changes.on('change', onChange);
    const done = () => {
      clearInterval(keepalive);
      deps.changes.off('change', onChange);
      streams--;
    };
    ctx.req.once('close', done);
    ctx.req.socket.setTimeout(0);
    ctx.status = 200;
    ctx.set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' });
    ctx.body = out;
    send('ready', { status_lists: (await deps.publisher.listIds()).map(uri) });
  }

  return async function statusListRoutesMiddleware(ctx: Context, next: Next) {
    if (!ctx.path.startsWith('/status-lists')) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return sendError(ctx, 405, 'invalid_request', 'status lists are read with GET');
    if (ctx.path === '/status-lists') {
      ctx.set('Cache-Control', `public, max-age=${deps.ttlSeconds}`);
      ctx.body = { status_lists: (await deps.publisher.listIds()).map(uri) };
      return;
    }
    if (ctx.path === '/status-lists/events') return stream(ctx);
    const m = /^\/status-lists\/(\d{1,12}-\d{1,6})$/.exec(ctx.path);
    const token = m ? await deps.publisher.token(m[1]!) : undefined;
    if (!token) return sendError(ctx, 404, 'invalid_request', 'no such status list (it may have been retired after its tokens expired)');
    ctx.set('Cache-Control', `public, max-age=${deps.ttlSeconds}`);
    ctx.type = 'application/statuslist+jwt';
    ctx.body = token;
  };
}
