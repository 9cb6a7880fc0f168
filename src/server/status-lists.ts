// Public status-list endpoints for gateways that verify tokens offline (draft-ietf-oauth-status-list):
//   GET /status-lists           every live list (the aggregation endpoint in discovery)
//   GET /status-lists/{id}      a list's signed status list token (application/statuslist+jwt)
//   GET /status-lists/events    Server-Sent Events: which lists changed, as soon as they change
import type { Context, Next } from 'koa';
import { statusListPath, type StatusListPublisher } from '../revocation/status-list.js';
import { sendError } from './http-errors.js';
import type { StatusStreams } from './status-streams.js';

export const statusListUri = (issuer: string, id: string) => `${issuer}${statusListPath(id)}`;

export function statusListRoutes(deps: { issuer: string; ttlSeconds: number; publisher: StatusListPublisher; streams: StatusStreams }) {
  const uri = (id: string) => statusListUri(deps.issuer, id);

  function stream(ctx: Context) {
    if (ctx.method === 'HEAD') {
      ctx.set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' });
      ctx.status = 200;
      return;
    }
    const refused = deps.streams.open(ctx.req, ctx.res);
    if (refused === 'per_address') {
      return sendError(ctx, 429, 'temporarily_unavailable', 'too many open status streams from this address', { 'Retry-After': '30' });
    }
    if (refused === 'capacity') return sendError(ctx, 503, 'temporarily_unavailable', 'too many open status streams on this instance', { 'Retry-After': '5' });
    if (refused) return sendError(ctx, 503, 'temporarily_unavailable', 'this instance is shutting down', { 'Retry-After': '1' });
    // the stream writes to the response itself, for as long as it lives
    ctx.respond = false;
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
