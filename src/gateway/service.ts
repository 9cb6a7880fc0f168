// `sigil verify-server`: the forward-auth service. A gateway asks it, for each API call, whether the
// call may pass: it answers 200 with the caller's identity in X-Sigil-* headers, or the refusal the
// gateway hands back to the client unchanged. It keeps no state of its own beyond caches: replicas
// share proof replay records through Redis (REDIS_URL), everything else is fetched from the issuer.
//
// Decisions, in order: the peer must be a trusted gateway (anyone else could invent the original
// request); the original request is read (original-request.ts); its path is normalised and a route
// found (routes.ts); the method checked; then the route audience's verifier decides.
//
// Status codes: 401/403 carry the verifier's WWW-Authenticate (and DPoP-Nonce). Refusals that are not
// about the token (untrusted peer, malformed description, no route, method not allowed) are 403
// without a challenge: nginx auth_request passes only 401 and 403 through, turning anything else into
// 500, so 400/404/405 would reach the client as server errors. When the verifier cannot decide (the
// issuer, a status list or the replay records unreachable) the answer is 503 with Retry-After: a 401
// would make clients throw away good tokens, a 403 would call them forbidden. nginx shows it as 500
// unless its config maps it back (docs/GATEWAYS.md does); the other gateways pass it through.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FetchLike } from '../verifier/issuer.js';
import { createRedisReplayStore, createVerifier, MemoryReplayStore, VerifierError, type ReplayStore, type Verifier, type VerifierOptions } from '../verifier/index.js';
import { isTrusted, type GatewayConfig, type Route } from './config.js';
import { identityHeaders } from './identity-headers.js';
import { createGatewayMetrics, type Outcome, type Reason } from './metrics.js';
import { BadOriginalRequest, readOriginalRequest } from './original-request.js';
import { normalisePath, RouteTable } from './routes.js';

export interface VerifyServiceOptions {
  config: GatewayConfig;
  /** SIGIL_ISSUER */
  issuer: string;
  /** VERIFY_PORT (default 3100; 0 for any free port) */
  port?: number;
  /** where to listen (default: every interface) */
  host?: string;
  /** REDIS_URL: proof replay records shared by replicas */
  redisUrl?: string;
  /** key prefix in Redis; replicas that share records use the same (default the verifier's) */
  redisPrefix?: string;
  /** tests: a replay store of their own, or a fetch that cuts the issuer off */
  replayStore?: ReplayStore;
  fetch?: FetchLike;
  /** tests: verifier options of their own (a clock, no change stream, a longer proof age) */
  verifierOverrides?: Partial<Pick<VerifierOptions, 'now' | 'status' | 'dpop'>>;
  log?: (event: string, detail?: Record<string, unknown>) => void;
}

export interface VerifyService {
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

/** the service's own endpoints, unless a gateway asks about an API path a route covers (ext_authz) */
const OWN_PATHS = new Set(['/health', '/ready', '/metrics']);
const READY_TIMEOUT_MS = 5_000;

interface Refusal {
  status: 401 | 403 | 503;
  headers: Record<string, string>;
  body: { error: string; error_description?: string };
}

export async function startVerifyService(opts: VerifyServiceOptions): Promise<VerifyService> {
  const log = opts.log ?? (() => {});
  const baseFetch: FetchLike = opts.fetch ?? ((input, init) => fetch(input, init));
  // when each status list copy was fetched, for the "oldest list" gauge; requests for lists carry this Accept
  const listFetchedAt = new Map<string, number>();
  const trackingFetch: FetchLike = async (input, init) => {
    const res = await baseFetch(input, init);
    const accept = new Headers(init?.headers).get('accept') ?? '';
    if (res.ok && accept.includes('statuslist+jwt')) listFetchedAt.set(String(input), Date.now());
    return res;
  };
  const oldestListAge = () => {
    if (!listFetchedAt.size) return undefined;
    return (Date.now() - Math.min(...listFetchedAt.values())) / 1000;
  };

  const store = opts.replayStore ?? (opts.redisUrl ? await createRedisReplayStore({ redis: opts.redisUrl, prefix: opts.redisPrefix }) : new MemoryReplayStore());
  // one store for every audience's verifier; closed here once, not by each verifier
  const shared: ReplayStore = { claim: (key, ttlMs, iat) => store.claim(key, ttlMs, iat) };
  // a verifier checks one audience; routes naming the same audience share it (and its caches)
  const verifiers = new Map<string, Verifier>();
  for (const route of opts.config.routes) {
    if (verifiers.has(route.audience)) continue;
    const overrides = opts.verifierOverrides ?? {};
    verifiers.set(route.audience, createVerifier({
      issuer: opts.issuer, audience: route.audience, fetch: trackingFetch, log, ...overrides,
      dpop: { ...overrides.dpop, replayStore: shared },
    }));
  }
  const table = new RouteTable(opts.config.routes);
  const metrics = createGatewayMetrics(oldestListAge);

  const refuse = (status: 403, error: Reason, description: string): Refusal => ({ status, headers: {}, body: { error, error_description: description } });

  async function decide(req: IncomingMessage): Promise<{ reason: Reason; allowed?: Record<string, string>; refusal?: Refusal }> {
    if (!isTrusted(opts.config.trusted, req.socket.remoteAddress)) {
      return { reason: 'untrusted_source', refusal: refuse(403, 'untrusted_source', 'authorization requests are taken from the configured gateways only') };
    }
    let original;
    try {
      original = readOriginalRequest(req);
    } catch (err) {
      if (!(err instanceof BadOriginalRequest)) throw err;
      return { reason: 'bad_request', refusal: refuse(403, 'bad_request', err.message) };
    }
    const normalised = normalisePath(original.pathAndQuery);
    if ('problem' in normalised) return { reason: 'bad_path', refusal: refuse(403, 'bad_path', `the request path is refused (${normalised.problem})`) };
    const route: Route | undefined = table.match(original.host, normalised.path);
    if (!route) return { reason: 'no_route', refusal: refuse(403, 'no_route', 'no route covers this host and path') };
    if (route.methods && !route.methods.has(original.method)) {
      return { reason: 'method_not_allowed', refusal: refuse(403, 'method_not_allowed', `${original.method} is not allowed here`) };
    }
    const verify = verifiers.get(route.audience)!;
    // the API client's certificate, as the gateway passes it (only trusted gateways get this far)
    const certHeader = opts.config.clientCertificateHeader;
    const certificate = certHeader === undefined ? undefined : req.headers[certHeader];
    if (Array.isArray(certificate)) return { reason: 'bad_request', refusal: refuse(403, 'bad_request', `${certHeader} appears more than once`) };
    try {
      const claims = await verify({ method: original.method, url: original.url, headers: req.headers, ...(certificate ? { clientCertificate: certificate } : {}) }, { scopes: route.scopes });
      const identity = identityHeaders(claims);
      if ('unsafeClaim' in identity) return { reason: 'unsafe_claim', refusal: refuse(403, 'unsafe_claim', `the token's ${identity.unsafeClaim} cannot be passed on in a header`) };
      return { reason: 'ok', allowed: identity.headers };
    } catch (err) {
      if (!(err instanceof VerifierError)) throw err;
      return { reason: err.code, refusal: { status: err.status, headers: err.headers, body: { error: err.code, error_description: err.description } } };
    }
  }

  async function ready(): Promise<{ ok: boolean; detail: Record<string, string> }> {
    const detail: Record<string, string> = {};
    let ok = true;
    await Promise.all([...verifiers].map(async ([audience, v]) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        // loads discovery and the JWKS when absent or past their max-age
        await Promise.race([v.ready(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), READY_TIMEOUT_MS)))]);
        // status lists are current while the change stream is open (it opens with the first list)
        const streamDown = v.stats.statusListFetches > 0 && !v.stats.statusStreamReady;
        detail[audience] = streamDown ? 'status list change stream down' : 'ok';
        if (streamDown) ok = false;
      } catch (err) {
        ok = false;
        detail[audience] = `issuer keys unavailable: ${(err as Error).message}`;
      } finally {
        clearTimeout(timer);
      }
    }));
    return { ok, detail };
  }

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { ...headers, 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    const describesAnother = req.headers['x-original-url'] !== undefined || req.headers['x-forwarded-uri'] !== undefined;
    // Envoy asks with the API's own path: a 200 from /metrics to a gateway asking about an API's
    // /metrics would let the call through. From a gateway, a path a route covers is always decided.
    const askedAboutApi = () => isTrusted(opts.config.trusted, req.socket.remoteAddress) && table.match(req.headers.host, path) !== undefined;
    if (OWN_PATHS.has(path) && req.method === 'GET' && !describesAnother && !askedAboutApi()) {
      if (path === '/health') return json(res, 200, { status: 'ok' });
      if (path === '/ready') {
        const r = await ready();
        return json(res, r.ok ? 200 : 503, { status: r.ok ? 'ready' : 'not ready', audiences: r.detail });
      }
      res.writeHead(200, { 'content-type': metrics.registry.contentType });
      res.end(await metrics.registry.metrics());
      return;
    }
    const started = process.hrtime.bigint();
    const decision = await decide(req);
    const outcome: Outcome = decision.allowed ? 'allowed' : decision.refusal!.status === 503 ? 'unavailable' : 'refused';
    metrics.decided(outcome, decision.reason, started);
    if (decision.allowed) {
      res.writeHead(200, { ...decision.allowed, 'cache-control': 'no-store', 'content-length': '0' });
      res.end();
      return;
    }
    // refusals are counted in /metrics, not logged one by one: a flood of bad tokens must not flood the log
    const r = decision.refusal!;
    json(res, r.status, r.body, r.headers);
  }

  const server = createServer({ keepAlive: true }, (req, res) => {
    handle(req, res).catch((err: Error) => {
      log('error', { message: err.message });
      if (!res.headersSent) json(res, 503, { error: 'temporarily_unavailable' }, { 'retry-after': '5' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 3100, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  // warm the caches: the first API call should not wait for discovery and the JWKS
  for (const v of verifiers.values()) v.ready().catch((err: Error) => log('issuer_unreachable', { message: err.message }));
  return {
    url: `http://${opts.host && opts.host.includes(':') ? `[${opts.host}]` : opts.host ?? '127.0.0.1'}:${port}`,
    port,
    server,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      for (const v of verifiers.values()) await v.close();
      await store.close?.();
    },
  };
}
