// The Koa app: the one place where middleware is composed, in the order a request meets it.
import Koa, { type Context, type Next } from 'koa';
import mount from 'koa-mount';
import type Provider from 'oidc-provider';
import type { Logger } from '../log.js';
import { sendError } from './http-errors.js';
import type { Metrics } from './metrics.js';
import { bodyGuard, errorBoundary, formParameterGuard, requestContext } from './middleware.js';
import type { Readiness } from './readiness.js';
import type { TokenOutcomes } from './token-outcomes.js';

export interface AppDeps {
  issuer: string;
  /** seconds a gateway may cache the JWKS: never past the next signing-key change */
  jwksMaxAge: () => number;
  log: Logger;
  metrics: Metrics;
  outcomes: TokenOutcomes;
  readiness: Readiness;
  /** the current provider: replaced when the signing keys change */
  provider: () => Provider;
  admin: (ctx: Context, next: Next) => Promise<unknown>;
  statusLists: (ctx: Context, next: Next) => Promise<unknown>;
  /** RFC 7591 `/register` and RFC 7592 `/register/{client_id}` (oidc-provider's own is disabled) */
  registration: (ctx: Context, next: Next) => Promise<unknown>;
}

/** Paths whose answer depends on storage: refused with 503 while a store is down. */
const NEEDS_STORAGE = new Set(['/token', '/introspect', '/revoke', '/register']);

export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.silent = true;

  app.use(requestContext(app, deps.issuer, deps.log));
  app.use(errorBoundary());

  app.use(async function tokenEndpointAccounting(ctx, next) {
    if (ctx.path !== '/token') return next();
    const end = deps.metrics.tokenLatency.startTimer();
    try {
      await next();
    } finally {
      end({ status: String(ctx.status) });
      // refusals made before oidc-provider saw the request (413, bad UTF-8, storage down...)
      if (ctx.status >= 400 && !deps.outcomes.recorded(ctx)) {
        const body = ctx.body as { error?: string; error_description?: string } | undefined;
        deps.outcomes.refused(ctx, { error: body?.error ?? String(ctx.status), reason: body?.error_description, clientId: undefined, grantType: undefined });
      }
    }
  });

  app.use(async function operationalEndpoints(ctx, next) {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    switch (ctx.path) {
      case '/health':
        ctx.body = { status: 'ok' };
        return;
      case '/ready':
        ctx.status = deps.readiness.ready ? 200 : 503;
        ctx.body = { status: deps.readiness.ready ? 'ready' : 'unavailable', stores: deps.readiness.report() };
        return;
      case '/metrics':
        ctx.type = deps.metrics.registry.contentType;
        ctx.body = await deps.metrics.registry.metrics();
        return;
      case '/.well-known/oauth-authorization-server':
        // RFC 8414 metadata: the same document oidc-provider serves for OpenID discovery
        ctx.path = '/.well-known/openid-configuration';
        return next();
      default:
        return next();
    }
  });

  app.use(bodyGuard());
  app.use(formParameterGuard());

  app.use(async function failClosed(ctx, next) {
    const gated = NEEDS_STORAGE.has(ctx.path) || ctx.path.startsWith('/admin/') || ctx.path.startsWith('/status-lists') || ctx.path.startsWith('/register/');
    if (gated && !deps.readiness.ready) {
      return sendError(ctx, 503, 'temporarily_unavailable', 'the server cannot reach its storage; retry shortly', { 'Retry-After': '1' });
    }
    return next();
  });

  // one dispatch for the rest, so the token endpoint passes through as few frames as possible
  const toProvider = currentProvider(deps.provider);
  app.use(function route(ctx, next) {
    const path = ctx.path;
    if (path === '/token') return toProvider(ctx, next);
    if (path === '/jwks') return jwksWithCaching(ctx, next);
    if (path.startsWith('/status-lists')) return deps.statusLists(ctx, next);
    if (path === '/admin' || path.startsWith('/admin/')) return deps.admin(ctx, next);
    if (path === '/register' || path.startsWith('/register/')) return deps.registration(ctx, next);
    return toProvider(ctx, next);
  });

  async function jwksWithCaching(ctx: Context, next: Next) {
    await toProvider(ctx, next);
    // oidc-provider sends no Cache-Control on the JWKS; gateways need one to cache it correctly
    if (ctx.status === 200) ctx.set('Cache-Control', `public, max-age=${deps.jwksMaxAge()}`);
  }
  return app;
}

/** Runs each request on the provider current when it arrived; a swap never touches requests in flight. */
function currentProvider(get: () => Provider) {
  let mounted: { provider: Provider; run: Koa.Middleware } | undefined;
  return function providerMiddleware(ctx: Context, next: Next) {
    const provider = get();
    if (mounted?.provider !== provider) mounted = { provider, run: mount(provider as unknown as Koa) };
    return mounted.run(ctx, next);
  };
}
