// Public status-list endpoints for gateways that verify tokens offline (draft-ietf-oauth-status-list):
//   GET /status-lists           every live list (the aggregation endpoint in discovery)
//   GET /status-lists/{id}      a list's signed status list token (application/statuslist+jwt)
//   GET /status-lists/events    Server-Sent Events: which lists changed, as soon as they change
import type { Context } from 'koa';
import { statusListPath, type StatusListPublisher } from '../revocation/status-list.js';
import { sendError } from './http-errors.js';
import type { StatusStreams } from './status-streams.js';
import type { PublicEndpoint, RouteHandler, RouteParams } from './routes.js';

export const statusListUri = (issuer: string, id: string) => `${issuer}${statusListPath(id)}`;

export function statusListRoutes(deps: { issuer: string; ttlSeconds: number; publisher: StatusListPublisher; streams: StatusStreams }) {
  const uri = (id: string) => statusListUri(deps.issuer, id);

  function stream(ctx: Context) {
    const refused = deps.streams.open(ctx.req, ctx.res);
    if (refused === 'per_address') {
      return sendError(ctx, 429, 'temporarily_unavailable', 'too many open status streams from this address', { 'Retry-After': '30' });
    }
    if (refused === 'capacity') return sendError(ctx, 503, 'temporarily_unavailable', 'too many open status streams on this instance', { 'Retry-After': '5' });
    if (refused) return sendError(ctx, 503, 'temporarily_unavailable', 'this instance is shutting down', { 'Retry-After': '1' });
    // the stream writes to the response itself, for as long as it lives
    ctx.respond = false;
  }

  return {
    async 'status-lists'(ctx: Context) {
      ctx.set('Cache-Control', `public, max-age=${deps.ttlSeconds}`);
      ctx.body = { status_lists: (await deps.publisher.listIds()).map(uri) };
    },
    async 'status-list'(ctx: Context, { list_id }: RouteParams) {
      const token = await deps.publisher.token(list_id!);
      if (!token) return sendError(ctx, 404, 'invalid_request', 'no such status list (it may have been retired after its tokens expired)');
      ctx.set('Cache-Control', `public, max-age=${deps.ttlSeconds}`);
      ctx.type = 'application/statuslist+jwt';
      ctx.body = token;
    },
    'status-list-events': stream,
  } satisfies Partial<Record<PublicEndpoint, RouteHandler>>;
}
