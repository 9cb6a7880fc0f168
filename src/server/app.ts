// The Koa app: the one place where middleware is composed, in the order a request meets it.
import Koa, { type Context, type Next } from 'koa';
import mount from 'koa-mount';
import type { Provider } from '../oidc/provider.js';
import type { Logger } from '../log.js';
import { sendError } from './http-errors.js';
import type { Metrics, MetricsAnswer } from './metrics.js';
import { bodyGuard, errorBoundary, formParameterGuard, requestContext } from './middleware.js';
import type { Readiness } from './readiness.js';
import {
  rawPath, ROUTES, RouteTable, type AdminEndpoint, type Endpoint, type PublicEndpoint, type Resolution, type RouteHandler, type RouteParams,
} from './routes.js';
import type { TokenOutcomes } from './token-outcomes.js';
import { workloadAuthentication, type ClientAuthEndpoint, type WorkloadAuthDeps } from '../workload/workload-auth.js';

export interface AppDeps {
  issuer: string;
  /** seconds a gateway may cache the JWKS: never past the next signing-key change */
  jwksMaxAge: () => number;
  log: Logger;
  metrics: Metrics;
  /** GET /metrics on this listener; undefined when it is served on its own (METRICS_PORT) */
  metricsEndpoint: ((authorization: string | undefined) => Promise<MetricsAnswer>) | undefined;
  outcomes: TokenOutcomes;
  readiness: Readiness;
  /** the current provider: replaced when the signing keys change */
  provider: () => Provider;
  /** every admin route, each behind the admin gate (admin-api.ts) */
  admin: Record<AdminEndpoint, RouteHandler>;
  statusLists: Record<'status-lists' | 'status-list' | 'status-list-events', RouteHandler>;
  /** RFC 7591 `/register` and RFC 7592 `/register/{client_id}` (oidc-provider's own is disabled) */
  registration: Record<'register' | 'read-registration' | 'update-registration' | 'delete-registration', RouteHandler>;
  /** workload identity client authentication (src/workload/workload-auth.ts); undefined: not served */
  workload?: WorkloadAuthDeps;
  /**
   * Sets ctx.state.clientCertificate (src/workload/client-certificate.ts) on the endpoints where a
   * client authenticates; undefined: certificates are never read.
   */
  clientCertificate?: (ctx: Context, next: Next) => unknown;
}

/** where clients authenticate (and a token may be bound to the certificate): the only routes that read one */
const CLIENT_AUTH_ENDPOINTS: ReadonlySet<string> = new Set<ClientAuthEndpoint>(['token', 'introspection', 'revocation']);

/** the client-authenticating endpoint a request resolved to, if any */
function clientAuthEndpoint(ctx: Context): ClientAuthEndpoint | undefined {
  const endpoint = (ctx.state.resolved as Resolution).route?.endpoint;
  return endpoint !== undefined && CLIENT_AUTH_ENDPOINTS.has(endpoint) ? endpoint as ClientAuthEndpoint : undefined;
}

const NO_PARAMS: RouteParams = Object.freeze({});

export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.silent = true;
  const routes = new RouteTable(ROUTES);

  app.use(requestContext(app, deps.issuer, deps.log));
  app.use(errorBoundary());

  // resolved once, on the path exactly as it arrived; refused (404/405) once the body guard has run
  app.use(function resolveRoute(ctx, next) {
    ctx.state.resolved = routes.resolve(ctx.method, rawPath(ctx.url));
    return next();
  });

  app.use(async function tokenEndpointAccounting(ctx, next) {
    if ((ctx.state.resolved as Resolution).route?.endpoint !== 'token') return next();
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

  app.use(bodyGuard());
  app.use(formParameterGuard());
  // the client certificate first (a workload may authenticate with it, a token may be bound to it)
  const readCertificate = deps.clientCertificate;
  if (readCertificate) {
    app.use(function clientCertificate(ctx, next) {
      return clientAuthEndpoint(ctx) !== undefined ? readCertificate(ctx, next) : next();
    });
  }
  // workload-bound clients are authenticated by Sigil before oidc-provider reads the request
  if (deps.workload) app.use(workloadAuthentication(deps.workload, clientAuthEndpoint));

  const toProvider: RouteHandler = currentProvider(deps.provider);
  // the public plane: what services, gateways, partners and probes call
  const publicPlane: Record<PublicEndpoint, RouteHandler> = {
    discovery: toProvider,
    token: toProvider,
    introspection: toProvider,
    revocation: toProvider,
    jwks: jwksWithCaching,
    ...deps.registration,
    ...deps.statusLists,
    health(ctx) {
      ctx.body = { status: 'ok' };
    },
    ready(ctx) {
      ctx.status = deps.readiness.ready ? 200 : 503;
      ctx.body = { status: deps.readiness.ready ? 'ready' : 'unavailable', stores: deps.readiness.report() };
    },
    async metrics(ctx) {
      // on its own listener (METRICS_PORT) when configured: not served here then
      if (!deps.metricsEndpoint) return sendError(ctx, 404, 'invalid_request', `no endpoint ${ctx.method} ${rawPath(ctx.url)}`);
      const answer = await deps.metricsEndpoint(ctx.get('authorization') || undefined);
      ctx.status = answer.status;
      ctx.set(answer.headers);
      ctx.body = answer.body;
    },
  };
  // and the admin plane (what the CLI calls), whole from admin-api.ts: one table, one dispatch
  const handlers: Record<Endpoint, RouteHandler> = { ...publicPlane, ...deps.admin };

  // one dispatch, so the token endpoint passes through as few frames as possible
  app.use(function route(ctx, next) {
    const { route, allow, params } = ctx.state.resolved as Resolution;
    if (!route) {
      if (!allow) return sendError(ctx, 404, 'invalid_request', `no endpoint ${ctx.method} ${rawPath(ctx.url)}`);
      ctx.set('Allow', allow);
      return sendError(ctx, 405, 'invalid_request', `method ${ctx.method} is not allowed on ${rawPath(ctx.url)}`);
    }
    // fail closed: nothing that depends on storage is answered while a store is unreachable
    if (route.needsStorage && !deps.readiness.ready) {
      return sendError(ctx, 503, 'temporarily_unavailable', 'the server cannot reach its storage; retry shortly', { 'Retry-After': '1' });
    }
    return handlers[route.endpoint](ctx, params ?? NO_PARAMS, next);
  });

  async function jwksWithCaching(ctx: Context, params: RouteParams, next: Next) {
    await toProvider(ctx, params, next);
    // oidc-provider sends no Cache-Control on the JWKS; gateways need one to cache it correctly
    if (ctx.status === 200) ctx.set('Cache-Control', `public, max-age=${deps.jwksMaxAge()}`);
  }
  return app;
}

/** Runs each request on the provider current when it arrived; a swap never touches requests in flight. */
function currentProvider(get: () => Provider) {
  let mounted: { provider: Provider; run: Koa.Middleware } | undefined;
  return function providerMiddleware(ctx: Context, _params: RouteParams, next: Next) {
    const provider = get();
    if (mounted?.provider !== provider) mounted = { provider, run: mount(provider as unknown as Koa) };
    return mounted.run(ctx, next);
  };
}
