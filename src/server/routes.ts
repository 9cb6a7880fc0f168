// Every (method, path) Sigil answers, on one screen. Anything else is 404, or 405 with an Allow
// header where the path is served with other methods. A path matches byte for byte as it arrived:
// no case folding, no trailing slash, no percent-decoding, no empty or dot segments, no `;params`,
// so each endpoint has exactly one spelling and every gate keyed on a route sees every request to it.

export type Endpoint =
  | 'discovery' | 'token' | 'introspection' | 'revocation' | 'jwks'
  | 'registration' | 'registration-management'
  | 'status-lists' | 'status-list' | 'status-list-events'
  | 'admin' | 'health' | 'ready' | 'metrics';

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';

export interface Route {
  /** `/register/{client_id}`: a `{name}` segment stands for one segment in that parameter's format (PARAMETERS) */
  path: string;
  /** HEAD only where listed: the read endpoints a gateway or a probe may HEAD */
  methods: readonly Method[];
  endpoint: Endpoint;
  /** its answer depends on Postgres or Redis: refused with 503 while a store is unreachable */
  needsStorage: boolean;
}

export const ROUTES: readonly Route[] = [
  { path: '/.well-known/oauth-authorization-server', methods: ['GET', 'HEAD'], endpoint: 'discovery', needsStorage: false },
  { path: '/.well-known/openid-configuration', methods: ['GET', 'HEAD'], endpoint: 'discovery', needsStorage: false },
  { path: '/token', methods: ['POST'], endpoint: 'token', needsStorage: true },
  { path: '/introspect', methods: ['POST'], endpoint: 'introspection', needsStorage: true },
  { path: '/revoke', methods: ['POST'], endpoint: 'revocation', needsStorage: true },
  { path: '/jwks', methods: ['GET', 'HEAD'], endpoint: 'jwks', needsStorage: false },
  { path: '/register', methods: ['POST'], endpoint: 'registration', needsStorage: true },
  { path: '/register/{client_id}', methods: ['GET', 'PUT', 'DELETE'], endpoint: 'registration-management', needsStorage: true },
  { path: '/status-lists', methods: ['GET', 'HEAD'], endpoint: 'status-lists', needsStorage: true },
  { path: '/status-lists/events', methods: ['GET'], endpoint: 'status-list-events', needsStorage: true },
  { path: '/status-lists/{list_id}', methods: ['GET', 'HEAD'], endpoint: 'status-list', needsStorage: true },
  { path: '/admin/bootstrap', methods: ['POST'], endpoint: 'admin', needsStorage: true },
  { path: '/admin/clients', methods: ['GET', 'POST'], endpoint: 'admin', needsStorage: true },
  { path: '/admin/clients/{client_id}', methods: ['GET'], endpoint: 'admin', needsStorage: true },
  { path: '/admin/clients/{client_id}/revoke', methods: ['POST'], endpoint: 'admin', needsStorage: true },
  { path: '/admin/clients/{client_id}/jwks', methods: ['PUT'], endpoint: 'admin', needsStorage: true },
  { path: '/admin/tokens/revoke', methods: ['POST'], endpoint: 'admin', needsStorage: true },
  { path: '/admin/keys', methods: ['GET'], endpoint: 'admin', needsStorage: true },
  { path: '/admin/keys/rotate', methods: ['POST'], endpoint: 'admin', needsStorage: true },
  { path: '/admin/registration-tokens', methods: ['GET', 'POST'], endpoint: 'admin', needsStorage: true },
  { path: '/admin/registration-tokens/{token_id}', methods: ['GET'], endpoint: 'admin', needsStorage: true },
  { path: '/admin/registration-tokens/{token_id}/revoke', methods: ['POST'], endpoint: 'admin', needsStorage: true },
  { path: '/health', methods: ['GET', 'HEAD'], endpoint: 'health', needsStorage: false },
  { path: '/ready', methods: ['GET', 'HEAD'], endpoint: 'ready', needsStorage: false },
  { path: '/metrics', methods: ['GET', 'HEAD'], endpoint: 'metrics', needsStorage: false },
];

/** What a request resolves to: its route, or none (with the Allow value when the path exists). */
export interface Resolution {
  route: Route | undefined;
  /** the methods the path is served with, for a 405 */
  allow: string | undefined;
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
  /** a literal segment, or the format of a parameter */
  segments: Array<string | RegExp>;
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
    const entry = this.#exact.get(path) ?? this.#matchPattern(path);
    if (!entry) return NOT_FOUND;
    return entry.byMethod.get(method) ?? entry.notAllowed;
  }

  #matchPattern(path: string): PathEntry | undefined {
    if (path.length > MAX_PATH_LENGTH) return undefined;
    const parts = path.split('/');
    for (const { segments, entry } of this.#patterns) {
      if (segments.length !== parts.length) continue;
      let matched = true;
      for (let i = 0; i < segments.length && matched; i++) {
        const segment = segments[i]!;
        matched = typeof segment === 'string' ? segment === parts[i] : segment.test(parts[i]!);
      }
      if (matched) return entry;
    }
    return undefined;
  }
}

function parameterFormat(segment: string, path: string): RegExp {
  const name = segment.slice(1, -1);
  const format = Object.hasOwn(PARAMETERS, name) ? PARAMETERS[name] : undefined;
  if (!format || !segment.endsWith('}')) throw new Error(`route table: ${path} has a parameter with no format`);
  return format;
}

/** The path of a request target as it arrived: Koa's ctx.path would drop a `#fragment` and so give a second spelling. */
export function rawPath(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}
