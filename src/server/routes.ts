// Every (method, path) Sigil answers, on one screen. Anything else is 404, or 405 with an Allow
// header where the path is served with other methods. A path matches byte for byte as it arrived:
// no case folding, no trailing slash, no percent-decoding, no empty or dot segments, no `;params`,
// so each endpoint has exactly one spelling and every gate keyed on a route sees every request to it.
// Two planes: the public one (services, gateways, partners, probes) and the admin one (the CLI);
// app.ts gives each endpoint its handler.
import type { Context, Next } from 'koa';

/** The public plane: what services, gateways, partners and probes call. */
export type PublicEndpoint =
  | 'discovery' | 'token' | 'introspection' | 'revocation' | 'jwks'
  | 'register' | 'read-registration' | 'update-registration' | 'delete-registration'
  | 'status-lists' | 'status-list' | 'status-list-events'
  | 'health' | 'ready' | 'metrics';

/** The admin plane: what the `sigil` CLI calls (every route but bootstrap needs the admin's token). */
export type AdminEndpoint =
  | 'bootstrap'
  | 'list-clients' | 'create-client' | 'read-client' | 'revoke-client' | 'set-client-keys'
  | 'revoke-token' | 'list-keys' | 'rotate-keys'
  | 'list-registration-tokens' | 'issue-registration-token' | 'read-registration-token' | 'revoke-registration-token'
  | 'list-trust-domains' | 'add-trust-domain' | 'remove-trust-domain'
  | 'list-federations' | 'add-federation' | 'remove-federation';

export type Endpoint = PublicEndpoint | AdminEndpoint;

/** What answers a route: `params` are its `{name}` segments; `next` is for oidc-provider's mount only. */
export type RouteHandler = (ctx: Context, params: RouteParams, next: Next) => unknown;

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';

export interface Route<E extends Endpoint = Endpoint> {
  /** `/register/{client_id}`: a `{name}` segment stands for one segment in that parameter's format (PARAMETERS) */
  path: string;
  /** HEAD only where listed: the read endpoints a gateway or a probe may HEAD */
  methods: readonly Method[];
  endpoint: E;
  /** its answer depends on Postgres or Redis: refused with 503 while a store is unreachable */
  needsStorage: boolean;
}

// A path served with several methods lists them in the order of its Allow header.
export const PUBLIC_ROUTES: readonly Route<PublicEndpoint>[] = [
  { path: '/.well-known/oauth-authorization-server', methods: ['GET', 'HEAD'], endpoint: 'discovery', needsStorage: false },
  { path: '/.well-known/openid-configuration', methods: ['GET', 'HEAD'], endpoint: 'discovery', needsStorage: false },
  { path: '/token', methods: ['POST'], endpoint: 'token', needsStorage: true },
  { path: '/introspect', methods: ['POST'], endpoint: 'introspection', needsStorage: true },
  { path: '/revoke', methods: ['POST'], endpoint: 'revocation', needsStorage: true },
  { path: '/jwks', methods: ['GET', 'HEAD'], endpoint: 'jwks', needsStorage: false },
  { path: '/register', methods: ['POST'], endpoint: 'register', needsStorage: true },
  { path: '/register/{client_id}', methods: ['GET'], endpoint: 'read-registration', needsStorage: true },
  { path: '/register/{client_id}', methods: ['PUT'], endpoint: 'update-registration', needsStorage: true },
  { path: '/register/{client_id}', methods: ['DELETE'], endpoint: 'delete-registration', needsStorage: true },
  { path: '/status-lists', methods: ['GET', 'HEAD'], endpoint: 'status-lists', needsStorage: true },
  { path: '/status-lists/events', methods: ['GET'], endpoint: 'status-list-events', needsStorage: true },
  { path: '/status-lists/{list_id}', methods: ['GET', 'HEAD'], endpoint: 'status-list', needsStorage: true },
  { path: '/health', methods: ['GET', 'HEAD'], endpoint: 'health', needsStorage: false },
  { path: '/ready', methods: ['GET', 'HEAD'], endpoint: 'ready', needsStorage: false },
  { path: '/metrics', methods: ['GET', 'HEAD'], endpoint: 'metrics', needsStorage: false },
];

export const ADMIN_ROUTES: readonly Route<AdminEndpoint>[] = [
  { path: '/admin/bootstrap', methods: ['POST'], endpoint: 'bootstrap', needsStorage: true },
  { path: '/admin/clients', methods: ['GET'], endpoint: 'list-clients', needsStorage: true },
  { path: '/admin/clients', methods: ['POST'], endpoint: 'create-client', needsStorage: true },
  { path: '/admin/clients/{client_id}', methods: ['GET'], endpoint: 'read-client', needsStorage: true },
  { path: '/admin/clients/{client_id}/revoke', methods: ['POST'], endpoint: 'revoke-client', needsStorage: true },
  { path: '/admin/clients/{client_id}/jwks', methods: ['PUT'], endpoint: 'set-client-keys', needsStorage: true },
  { path: '/admin/tokens/revoke', methods: ['POST'], endpoint: 'revoke-token', needsStorage: true },
  { path: '/admin/keys', methods: ['GET'], endpoint: 'list-keys', needsStorage: true },
  { path: '/admin/keys/rotate', methods: ['POST'], endpoint: 'rotate-keys', needsStorage: true },
  { path: '/admin/registration-tokens', methods: ['GET'], endpoint: 'list-registration-tokens', needsStorage: true },
  { path: '/admin/registration-tokens', methods: ['POST'], endpoint: 'issue-registration-token', needsStorage: true },
  { path: '/admin/registration-tokens/{token_id}', methods: ['GET'], endpoint: 'read-registration-token', needsStorage: true },
  { path: '/admin/registration-tokens/{token_id}/revoke', methods: ['POST'], endpoint: 'revoke-registration-token', needsStorage: true },
  // removal by body: an issuer is a URL, and a trust domain may be "." or "..", neither fit for a path segment
  { path: '/admin/trust-domains', methods: ['GET'], endpoint: 'list-trust-domains', needsStorage: true },
  { path: '/admin/trust-domains', methods: ['POST'], endpoint: 'add-trust-domain', needsStorage: true },
  { path: '/admin/trust-domains/remove', methods: ['POST'], endpoint: 'remove-trust-domain', needsStorage: true },
  { path: '/admin/federations', methods: ['GET'], endpoint: 'list-federations', needsStorage: true },
  { path: '/admin/federations', methods: ['POST'], endpoint: 'add-federation', needsStorage: true },
  { path: '/admin/federations/remove', methods: ['POST'], endpoint: 'remove-federation', needsStorage: true },
];

/** Both planes: one table, so a request is resolved by one lookup whichever plane serves it. */
export const ROUTES: readonly Route[] = [...PUBLIC_ROUTES, ...ADMIN_ROUTES];

/** The `{name}` segments of a matched path, each already in its one format (PARAMETERS). */
export type RouteParams = Readonly<Record<string, string>>;

/** What a request resolves to: its route, or none (with the Allow value when the path exists). */
export interface Resolution {
  route: Route | undefined;
  /** the methods the path is served with, for a 405 */
  allow: string | undefined;
  /** only on a matched route with `{name}` segments */
  params?: RouteParams;
}

export const NOT_FOUND: Resolution = Object.freeze({ route: undefined, allow: undefined });

/** The one spelling of each parameter: no percent-escapes, dots or case games reach a handler. */
const PARAMETERS: Record<string, RegExp> = {
  // Sigil's ids are hex (and the admin's is sigil-admin); base64url covers both
  client_id: /^[A-Za-z0-9_-]{1,128}$/,
  token_id: /^[A-Za-z0-9_-]{1,128}$/,
  // <expiry window>-<shard>, see status-list.ts
  list_id: /^\d{1,12}-\d{1,6}$/,
};
/** longer paths than any route's are not looked at */
const MAX_PATH_LENGTH = 256;

interface PathEntry {
  byMethod: Map<string, Resolution>;
  notAllowed: Resolution;
}

interface Pattern {
  /** a literal segment, or a parameter's name and format */
  segments: Array<string | { name: string; format: RegExp }>;
  entry: PathEntry;
}

/** The route table: a Map lookup for fixed paths (the token endpoint's), segment matching for the rest. */
export class RouteTable {
  readonly #exact = new Map<string, PathEntry>();
  readonly #patterns: Pattern[] = [];

  constructor(routes: readonly Route[]) {
    const byPath = new Map<string, Route[]>();
    for (const route of routes) byPath.set(route.path, [...(byPath.get(route.path) ?? []), route]);
    for (const [path, sameRoutes] of byPath) {
      const byMethod = new Map<string, Resolution>();
      for (const route of sameRoutes) {
        for (const method of route.methods) {
          if (byMethod.has(method)) throw new Error(`route table: ${method} ${path} is listed twice`);
          byMethod.set(method, Object.freeze({ route, allow: undefined }));
        }
      }
      const entry: PathEntry = { byMethod, notAllowed: Object.freeze({ route: undefined, allow: [...byMethod.keys()].join(', ') }) };
      if (!path.includes('{')) {
        this.#exact.set(path, entry);
      } else {
        this.#patterns.push({ segments: path.split('/').map((s) => (s.startsWith('{') ? parameterFormat(s, path) : s)), entry });
      }
    }
  }

  /** `path` is the request target's path exactly as it arrived (before `?`). */
  resolve(method: string, path: string): Resolution {
    // fixed paths (the token endpoint's) cost one Map lookup and no allocation
    const exact = this.#exact.get(path);
    if (exact) return exact.byMethod.get(method) ?? exact.notAllowed;
    return this.#matchPattern(method, path);
  }

  #matchPattern(method: string, path: string): Resolution {
    if (path.length > MAX_PATH_LENGTH) return NOT_FOUND;
    const parts = path.split('/');
    for (const { segments, entry } of this.#patterns) {
      if (segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let matched = true;
      for (let i = 0; i < segments.length && matched; i++) {
        const segment = segments[i]!;
        const part = parts[i]!;
        if (typeof segment === 'string') {
          matched = segment === part;
        } else {
          matched = segment.format.test(part);
          params[segment.name] = part;
        }
      }
      if (!matched) continue;
      const found = entry.byMethod.get(method);
      return found ? { ...found, params } : entry.notAllowed;
    }
    return NOT_FOUND;
  }
}

function parameterFormat(segment: string, path: string): { name: string; format: RegExp } {
  const name = segment.slice(1, -1);
  const format = Object.hasOwn(PARAMETERS, name) ? PARAMETERS[name] : undefined;
  if (!format || !segment.endsWith('}')) throw new Error(`route table: ${path} has a parameter with no format`);
  return { name, format };
}

/** The path of a request target as it arrived: Koa's ctx.path would drop a `#fragment` and so give a second spelling. */
export function rawPath(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}
