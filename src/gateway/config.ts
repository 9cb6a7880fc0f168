// The forward-auth service's config file (CONTRACT.md, "Gateways"), read strictly: a key this code
// does not know is a typo that would otherwise silently weaken a route, so it is refused, as are bad
// CIDRs, prefixes that are not plain paths, and an empty route list.
import { BlockList, isIP } from 'node:net';

export class GatewayConfigError extends Error {
  override name = 'GatewayConfigError';
}

export interface Route {
  /** lower case, no port, no trailing dot; undefined = any host */
  host: string | undefined;
  /** a normalised path: starts with "/", no trailing "/" except the root itself */
  prefix: string;
  audience: string;
  scopes: readonly string[];
  /** upper case; undefined = any method */
  methods: ReadonlySet<string> | undefined;
}

export interface GatewayConfig {
  routes: readonly Route[];
  /** the ranges as written (for logs), and the list the peers are checked against */
  trustedProxies: readonly string[];
  trusted: BlockList;
  /**
   * `client_certificate_header` (lower case): where the gateway puts the API client's TLS certificate
   * (e.g. nginx $ssl_client_escaped_cert), for certificate-bound tokens (RFC 8705 §3); undefined:
   * such tokens are refused
   */
  clientCertificateHeader?: string;
}

/** without `trusted_proxies`: the gateway runs on the same machine (or in the same pod) */
export const LOOPBACK = ['127.0.0.0/8', '::1/128'];

const ROUTE_KEYS = new Set(['host', 'prefix', 'audience', 'scopes', 'methods']);
const TOP_KEYS = new Set(['routes', 'trusted_proxies', 'client_certificate_header']);
/** RFC 9110 field-name */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** headers that already mean something to the service */
const RESERVED_HEADERS = new Set(['authorization', 'dpop', 'host', 'x-original-url', 'x-original-method', 'x-forwarded-uri', 'x-forwarded-method', 'x-forwarded-proto', 'x-forwarded-host']);
/** RFC 9110 token characters: what an HTTP method may be */
const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 6749 §3.3 scope-token */
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
/** a DNS name or an IP literal as it appears in Host (IPv6 in brackets) */
const HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])$/;
/** what a route prefix may hold: unreserved characters and a few sub-delims, segments separated by "/" */
const PREFIX = /^\/(?:[A-Za-z0-9\-._~!$&'()*+,=:@]+(?:\/[A-Za-z0-9\-._~!$&'()*+,=:@]+)*)?\/?$/;

const describe = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

function unknownKeys(obj: Record<string, unknown>, known: Set<string>, where: string): void {
  const extra = Object.keys(obj).filter((k) => !known.has(k));
  if (extra.length) throw new GatewayConfigError(`${where}: unknown key${extra.length > 1 ? 's' : ''} ${extra.map((k) => JSON.stringify(k)).join(', ')} (known: ${[...known].join(', ')})`);
}

function stringList(v: unknown, where: string, check: (s: string) => boolean, what: string): string[] {
  if (!Array.isArray(v)) throw new GatewayConfigError(`${where} must be an array of ${what}s, not ${describe(v)}`);
  return v.map((s, i) => {
    if (typeof s !== 'string' || !check(s)) throw new GatewayConfigError(`${where}[${i}] is not a valid ${what}: ${JSON.stringify(s)}`);
    return s;
  });
}

/** "10.0.0.0/8", "::1/128", or a single address; the prefix length within the family's bounds */
export function parseCidr(range: string): { address: string; bits: number; family: 'ipv4' | 'ipv6' } | undefined {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(range);
  if (!m) return undefined;
  const version = isIP(m[1]!);
  if (!version) return undefined;
  const max = version === 4 ? 32 : 128;
  const bits = m[2] === undefined ? max : Number(m[2]);
  if (bits > max || (m[2]?.length ?? 0) > 1 && m[2]!.startsWith('0')) return undefined;
  return { address: m[1]!, bits, family: version === 4 ? 'ipv4' : 'ipv6' };
}

export function trustedList(ranges: readonly string[]): BlockList {
  const list = new BlockList();
  for (const r of ranges) {
    const c = parseCidr(r)!;
    list.addSubnet(c.address, c.bits, c.family);
  }
  return list;
}

/** The peer address of a socket, IPv4-mapped IPv6 (a dual-stack listener) read as IPv4. */
export function isTrusted(list: BlockList, peer: string | undefined): boolean {
  if (!peer) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(peer)?.[1];
  if (mapped) return list.check(mapped, 'ipv4');
  const version = isIP(peer);
  return version !== 0 && list.check(peer, version === 4 ? 'ipv4' : 'ipv6');
}

function parseRoute(raw: unknown, i: number): Route {
  const where = `routes[${i}]`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new GatewayConfigError(`${where} must be an object, not ${describe(raw)}`);
  const r = raw as Record<string, unknown>;
  unknownKeys(r, ROUTE_KEYS, where);
  if (typeof r.prefix !== 'string' || !PREFIX.test(r.prefix)) {
    throw new GatewayConfigError(`${where}.prefix must be a path like "/orders" (plain characters, no "//", no query), not ${JSON.stringify(r.prefix)}`);
  }
  if (r.prefix.split('/').some((s) => s === '.' || s === '..')) throw new GatewayConfigError(`${where}.prefix must not hold "." or ".." segments`);
  if (typeof r.audience !== 'string' || !r.audience.trim()) throw new GatewayConfigError(`${where}.audience must be a non-empty string`);
  let host: string | undefined;
  if (r.host !== undefined) {
    if (typeof r.host !== 'string') throw new GatewayConfigError(`${where}.host must be a string, not ${describe(r.host)}`);
    host = r.host.toLowerCase().replace(/\.$/, '');
    if (!HOST.test(host)) throw new GatewayConfigError(`${where}.host must be a host name without port or scheme, not ${JSON.stringify(r.host)}`);
  }
  const scopes = r.scopes === undefined ? [] : stringList(r.scopes, `${where}.scopes`, (s) => SCOPE.test(s), 'scope');
  const methods = r.methods === undefined ? undefined : stringList(r.methods, `${where}.methods`, (s) => METHOD.test(s), 'HTTP method');
  if (methods?.length === 0) throw new GatewayConfigError(`${where}.methods is empty: leave it out to allow every method`);
  const prefix = r.prefix.length > 1 ? r.prefix.replace(/\/$/, '') : r.prefix;
  return { host, prefix, audience: r.audience, scopes, methods: methods && new Set(methods.map((m) => m.toUpperCase())) };
}

/** The parsed, checked config; `source` names the file in messages. */
export function parseGatewayConfig(text: string, source = 'the config file'): GatewayConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new GatewayConfigError(`${source} is not JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new GatewayConfigError(`${source} must hold a JSON object, not ${describe(doc)}`);
  const d = doc as Record<string, unknown>;
  unknownKeys(d, TOP_KEYS, source);
  if (!Array.isArray(d.routes) || d.routes.length === 0) throw new GatewayConfigError(`${source}: "routes" must be a non-empty array (a request that matches no route is refused, so no routes would refuse everything)`);
  const routes = d.routes.map(parseRoute);
  const seen = new Set<string>();
  for (const r of routes) {
    const key = `${r.host ?? '*'} ${r.prefix}`;
    if (seen.has(key)) throw new GatewayConfigError(`${source}: two routes for host ${r.host ?? '(any)'} and prefix ${r.prefix}`);
    seen.add(key);
  }
  const trustedProxies = d.trusted_proxies === undefined ? LOOPBACK : stringList(d.trusted_proxies, 'trusted_proxies', (s) => parseCidr(s) !== undefined, 'address or CIDR range');
  if (trustedProxies.length === 0) throw new GatewayConfigError('trusted_proxies is empty: no gateway could ask (leave it out for loopback only)');
  const header = d.client_certificate_header;
  if (header !== undefined && (typeof header !== 'string' || !HEADER_NAME.test(header) || RESERVED_HEADERS.has(header.toLowerCase()))) {
    throw new GatewayConfigError(`client_certificate_header must be a header name of its own, e.g. "X-Client-Cert", not ${JSON.stringify(header)}`);
  }
  return { routes, trustedProxies, trusted: trustedList(trustedProxies), ...(header !== undefined ? { clientCertificateHeader: (header as string).toLowerCase() } : {}) };
}
