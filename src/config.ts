// The only reader of process.env: every setting is parsed and validated here, once, with a clear error.
import path from 'node:path';
import { parseCidr } from './gateway/config.js';
import { redactUrl } from './redact-url.js';
import { DELEGATION_DEPTH_CEILING } from './input/input-limits.js';
import { SIGNING_ALGS, type SigningAlg } from './keys/algorithms.js';
import { MAX_ACCESS_TOKEN_TTL_SECONDS } from './tokens/access-tokens.js';

export type { SigningAlg };

export interface Config {
  port: number;
  /** listen address; unset listens on every interface */
  host: string | undefined;
  /** the public URL: `iss` of every token, base of every endpoint and of every URL-bound check */
  issuer: string;
  databaseUrl: string | undefined;
  /** DATABASE_DIRECT_URL: a direct Postgres connection for migrations (e.g. past a PgBouncer); unset → databaseUrl */
  databaseDirectUrl: string | undefined;
  redisUrl: string | undefined;
  /** REDIS_CLUSTER=true: REDIS_URL names the seed nodes of a Redis (or Valkey) Cluster */
  redisCluster: RedisClusterSettings | undefined;
  /** prefix of every Redis key and pub/sub channel, so test runs and deployments never collide */
  redisPrefix: string;
  dataDir: string;
  accessTokenTtl: number;
  refreshTokenTtl: number;
  /** MAX_DELEGATION_DEPTH: the most `act` levels (token exchange hops) a token may carry */
  maxDelegationDepth: number;
  logLevel: string;
  signingAlg: SigningAlg;
  /** RFC 9449 §8 server nonces: when true every DPoP proof must carry a nonce the server issued */
  dpopRequireNonce: boolean;
  /** how long gateways may cache the JWKS */
  jwksMaxAgeSeconds: number;
  /** the `ttl` of status list tokens: how long a gateway may cache a list before fetching it again */
  statusListTtlSeconds: number;
  /** how client jwks_uri documents are fetched (SSRF limits); see src/outbound/jwks-fetch.ts */
  jwksUri: JwksUriSettings;
  /** key-encryption key for signing keys at rest (else the file `kek` in keysDir) */
  kek: string | undefined;
  /** where the admin key (CLI) and the generated KEK file live */
  keysDir: string;
  /** ASSERTION_AUD_TOKEN_ENDPOINT: also accept the token endpoint URL as a client assertion's aud (older RFC 7523 clients) */
  assertionAudTokenEndpoint: boolean;
  /**
   * SVID_MAX_LIFETIME: the furthest a JWT-SVID's exp may lie ahead (seconds). An SVID is reusable until
   * it expires (no one-time jti), so this bounds how long a copied one is worth anything; SPIRE's default
   * JWT-SVID TTL is 300 s, and 900 leaves room for a TTL raised a little without accepting hour-long ones.
   */
  svidMaxLifetimeSeconds: number;
  /** how long a connection may take to send a request, and how many there may be */
  http: HttpLimits;
  /** bounds of the status-list event streams (/status-lists/events) */
  statusStreams: StatusStreamLimits;
  /** where /metrics is served, who may read it, which clients get their own series */
  metrics: MetricsSettings;
  /** how SPIFFE bundles of configured trust domains are refreshed and how long a stale one is kept */
  spiffeBundles: SpiffeBundleSettings;
  /** TLS_CERT_FILE + TLS_KEY_FILE: Sigil terminates TLS itself (TLS 1.3 only); undefined: plain HTTP */
  tls: TlsSettings | undefined;
  /** where client certificates (RFC 8705) come from and which CAs tls_client_auth trusts */
  clientCertificates: ClientCertificateSettings;
}

export interface SpiffeBundleSettings {
  /** SPIFFE_BUNDLE_REFRESH_MIN: the shortest refresh interval, whatever spiffe_refresh_hint says (also the retry interval after a failure) */
  refreshMinSeconds: number;
  /** SPIFFE_BUNDLE_REFRESH_MAX: the longest refresh interval, and the interval when the bundle gives no hint */
  refreshMaxSeconds: number;
  /** SPIFFE_BUNDLE_MAX_STALENESS: how long past its refresh time a bundle that cannot be refreshed is still used; then the trust domain fails closed */
  maxStalenessSeconds: number;
}

export interface TlsSettings {
  /** TLS_CERT_FILE: the server certificate, PEM, followed by its intermediates */
  certFile: string;
  /** TLS_KEY_FILE: its private key, PEM */
  keyFile: string;
}

export interface ClientCertificateSettings {
  /** TLS_CLIENT_CA_FILE: the CA certificates (PEM) a tls_client_auth client's certificate must chain to */
  caFile: string | undefined;
  /** TLS_CLIENT_CERT_HEADER (lower case): the header a TLS-terminating proxy puts the client certificate in */
  proxyHeader: string | undefined;
  /** TLS_TRUSTED_PROXIES: the peer addresses (CIDRs) whose proxyHeader is believed; from any other the header is refused */
  trustedProxies: string[];
  /** MTLS_BASE_URL: where clients reach Sigil with a certificate when that is not ISSUER (RFC 8705 §5 mtls_endpoint_aliases) */
  mtlsBaseUrl: string | undefined;
}

export interface HttpLimits {
  /** HTTP_HEADERS_TIMEOUT_MS: from the connection (kept alive: the request's first byte) to the end of the headers */
  headersTimeoutMs: number;
  /** HTTP_REQUEST_TIMEOUT_MS: from the same start to the end of the body */
  requestTimeoutMs: number;
  /** HTTP_KEEP_ALIVE_TIMEOUT_MS: how long an idle connection is kept after a response */
  keepAliveTimeoutMs: number;
  /** HTTP_MAX_CONNECTIONS: open connections (status streams included); more are closed at once */
  maxConnections: number;
}

export interface StatusStreamLimits {
  /** STATUS_STREAMS_MAX: open streams on this instance */
  max: number;
  /** STATUS_STREAMS_PER_ADDRESS: open streams per source address (IPv6: per /64) */
  perAddress: number;
  /** STATUS_STREAM_LIFETIME: seconds a stream stays open before it is ended (the client reconnects) */
  lifetimeSeconds: number;
}

export interface MetricsSettings {
  /** METRICS_PORT: serve /metrics on its own listener (and not on PORT); unset: on PORT */
  port: number | undefined;
  /** METRICS_HOST: that listener's address */
  host: string;
  /** METRICS_TOKEN: when set, /metrics requires `Authorization: Bearer <token>` */
  token: string | undefined;
  /** METRICS_CLIENT_IDS: the only client ids that become a metric label */
  clientIds: string[];
}

export interface JwksUriSettings {
  /** JWKS_URI_ALLOW_HTTP_LOOPBACK: development only, http:// and loopback addresses for loopback hosts */
  allowHttpLoopback: boolean;
  /** JWKS_URI_ALLOWED_HOSTS: hosts that may resolve to internal (private, loopback, link-local, CGNAT) addresses */
  allowedHosts: string[];
  timeoutMs: number;
  maxBytes: number;
  minCacheSeconds: number;
  maxCacheSeconds: number;
}

export interface RedisClusterSettings {
  /** seed nodes; the rest of the cluster is discovered from them */
  nodes: Array<{ host: string; port: number }>;
  username: string | undefined;
  password: string | undefined;
  /** rediss:// seeds: TLS to every node */
  tls: boolean;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${value}`);
  return value;
}

function oneOf<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

function url(name: string, raw: string, protocols: string[]): string {
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    // the value may hold a password: never echo it, only a redacted form
    throw new ConfigError(`${name} is not a URL: "${redactUrl(raw)}" (percent-encode @ : / ? # in the user name and password)`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${name} must use ${protocols.join(' or ')}, got "${parsed.protocol}"`);
  }
  return raw;
}

/** REDIS_CLUSTER=true: REDIS_URL is a comma-separated list of seed node URLs sharing scheme and credentials. */
function redisClusterSettings(env: Env): RedisClusterSettings | undefined {
  if (oneOf(env, 'REDIS_CLUSTER', 'false', ['true', 'false']) !== 'true') return undefined;
  if (!env.REDIS_URL) throw new ConfigError('REDIS_CLUSTER=true needs REDIS_URL: the seed nodes, e.g. redis://10.0.0.1:7000,redis://10.0.0.2:7000');
  const seeds = env.REDIS_URL.split(',').map((s) => s.trim());
  const parsed = seeds.map((seed) => new URL(url('REDIS_URL', seed, ['redis:', 'rediss:'])));
  for (const [i, u] of parsed.entries()) {
    if (!u.hostname) throw new ConfigError(`REDIS_URL seed "${redactUrl(seeds[i]!)}" names no host`);
    // a cluster has database 0 only
    if (u.pathname !== '' && u.pathname !== '/' && u.pathname !== '/0') throw new ConfigError(`REDIS_URL seed "${redactUrl(seeds[i]!)}": a cluster has no database other than 0`);
  }
  const first = parsed[0]!;
  if (parsed.some((u) => u.protocol !== first.protocol || u.username !== first.username || u.password !== first.password)) {
    throw new ConfigError('REDIS_URL seeds of a cluster must share one scheme (redis:// or rediss://) and the same credentials');
  }
  return {
    nodes: parsed.map((u) => ({ host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(u.port || 6379) })),
    username: first.username ? decodeURIComponent(first.username) : undefined,
    password: first.password ? decodeURIComponent(first.password) : undefined,
    tls: first.protocol === 'rediss:',
  };
}

function jwksUriSettings(env: Env): JwksUriSettings {
  const allowedHosts = (env.JWKS_URI_ALLOWED_HOSTS ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
  const badHost = allowedHosts.find((h) => !/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+|[0-9a-f:.]+)$/.test(h));
  if (badHost !== undefined) throw new ConfigError(`JWKS_URI_ALLOWED_HOSTS must be a comma-separated list of host names or IP addresses, got "${badHost}"`);
  const minCacheSeconds = integer(env, 'JWKS_URI_CACHE_MIN', 60, 1, 3600);
  const maxCacheSeconds = integer(env, 'JWKS_URI_CACHE_MAX', 86400, 1, 7 * 86400);
  if (maxCacheSeconds < minCacheSeconds) throw new ConfigError(`JWKS_URI_CACHE_MAX (${maxCacheSeconds}) must not be below JWKS_URI_CACHE_MIN (${minCacheSeconds})`);
  return {
    allowHttpLoopback: oneOf(env, 'JWKS_URI_ALLOW_HTTP_LOOPBACK', 'false', ['true', 'false']) === 'true',
    allowedHosts,
    timeoutMs: integer(env, 'JWKS_URI_TIMEOUT_MS', 3000, 100, 30_000),
    maxBytes: integer(env, 'JWKS_URI_MAX_BYTES', 65536, 1024, 1024 * 1024),
    minCacheSeconds,
    maxCacheSeconds,
  };
}

// Defaults: SPIRE publishes a new authority in the bundle long before it signs with it (a fraction of
// the CA TTL, hours by default), so an hourly refresh (MAX) sees it in time, and a removed (e.g.
// compromised) key stops verifying within an hour; MIN keeps a hint of 0 or 1 from making Sigil poll
// the endpoint in a loop. MAX_STALENESS: an endpoint down for up to an hour (a deploy, an outage)
// does not stop every workload from getting tokens, and a key removed during an outage verifies for at
// most REFRESH_MAX + MAX_STALENESS (2 h by default).
function spiffeBundleSettings(env: Env): SpiffeBundleSettings {
  const refreshMinSeconds = integer(env, 'SPIFFE_BUNDLE_REFRESH_MIN', 30, 1, 3600);
  const refreshMaxSeconds = integer(env, 'SPIFFE_BUNDLE_REFRESH_MAX', 3600, 1, 86400);
  if (refreshMaxSeconds < refreshMinSeconds) throw new ConfigError(`SPIFFE_BUNDLE_REFRESH_MAX (${refreshMaxSeconds}) must not be below SPIFFE_BUNDLE_REFRESH_MIN (${refreshMinSeconds})`);
  return { refreshMinSeconds, refreshMaxSeconds, maxStalenessSeconds: integer(env, 'SPIFFE_BUNDLE_MAX_STALENESS', 3600, 0, 7 * 86400) };
}

/** a metrics token shorter than this is refused: it guards activity figures */
const METRICS_TOKEN_MIN_LENGTH = 32;
/** per-client series are opt-in and bounded */
const METRICS_CLIENT_IDS_MAX = 100;

function httpLimits(env: Env): HttpLimits {
  const headersTimeoutMs = integer(env, 'HTTP_HEADERS_TIMEOUT_MS', 5000, 100, 120_000);
  const requestTimeoutMs = integer(env, 'HTTP_REQUEST_TIMEOUT_MS', 10_000, 100, 300_000);
  // Node refuses a headers timeout longer than the request timeout
  if (headersTimeoutMs > requestTimeoutMs) throw new ConfigError(`HTTP_HEADERS_TIMEOUT_MS (${headersTimeoutMs}) must not be above HTTP_REQUEST_TIMEOUT_MS (${requestTimeoutMs})`);
  return {
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: integer(env, 'HTTP_KEEP_ALIVE_TIMEOUT_MS', 5000, 100, 600_000),
    maxConnections: integer(env, 'HTTP_MAX_CONNECTIONS', 10_000, 2, 1_000_000),
  };
}

function statusStreamLimits(env: Env, http: HttpLimits): StatusStreamLimits {
  const max = integer(env, 'STATUS_STREAMS_MAX', 5000, 1, 1_000_000);
  // streams hold their connections: they must leave some for requests
  if (max >= http.maxConnections) throw new ConfigError(`STATUS_STREAMS_MAX (${max}) must be below HTTP_MAX_CONNECTIONS (${http.maxConnections})`);
  const perAddress = integer(env, 'STATUS_STREAMS_PER_ADDRESS', 32, 1, 1_000_000);
  return { max, perAddress: Math.min(perAddress, max), lifetimeSeconds: integer(env, 'STATUS_STREAM_LIFETIME', 600, 1, 86400) };
}

function metricsSettings(env: Env, mainPort: number): MetricsSettings {
  const port = env.METRICS_PORT === undefined || env.METRICS_PORT === '' ? undefined : integer(env, 'METRICS_PORT', 0, 0, 65535);
  if (port !== undefined && port !== 0 && port === mainPort) throw new ConfigError(`METRICS_PORT must differ from PORT (${mainPort}); leave it unset to serve /metrics on PORT`);
  const token = env.METRICS_TOKEN || undefined;
  if (token !== undefined && (token.length < METRICS_TOKEN_MIN_LENGTH || !/^[\x21-\x7e]+$/.test(token))) {
    throw new ConfigError(`METRICS_TOKEN must be at least ${METRICS_TOKEN_MIN_LENGTH} printable characters without spaces (e.g. openssl rand -hex 32)`);
  }
  const clientIds = [...new Set((env.METRICS_CLIENT_IDS ?? '').split(',').map((id) => id.trim()).filter(Boolean))];
  if (clientIds.length > METRICS_CLIENT_IDS_MAX) throw new ConfigError(`METRICS_CLIENT_IDS may name at most ${METRICS_CLIENT_IDS_MAX} clients, got ${clientIds.length}`);
  return { port, host: env.METRICS_HOST || '127.0.0.1', token, clientIds };
}

function tlsSettings(env: Env): TlsSettings | undefined {
  const certFile = env.TLS_CERT_FILE || undefined;
  const keyFile = env.TLS_KEY_FILE || undefined;
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new ConfigError('TLS_CERT_FILE and TLS_KEY_FILE go together: set both (Sigil serves https) or neither (plain http, e.g. behind a proxy)');
  return { certFile: path.resolve(certFile), keyFile: path.resolve(keyFile) };
}

/** RFC 9110 field-name (token); a few names that carry something else are refused outright */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const RESERVED_HEADERS = new Set(['authorization', 'dpop', 'host', 'content-type', 'content-length', 'transfer-encoding', 'cookie', 'connection']);

function clientCertificateSettings(env: Env, issuer: string, tls: boolean): ClientCertificateSettings {
  const caFile = env.TLS_CLIENT_CA_FILE ? path.resolve(env.TLS_CLIENT_CA_FILE) : undefined;
  const rawHeader = env.TLS_CLIENT_CERT_HEADER || undefined;
  if (rawHeader !== undefined && (!HEADER_NAME.test(rawHeader) || RESERVED_HEADERS.has(rawHeader.toLowerCase()))) {
    throw new ConfigError(`TLS_CLIENT_CERT_HEADER must be a header name of its own, e.g. X-Client-Cert, got "${rawHeader.slice(0, 80)}"`);
  }
  const trustedProxies = (env.TLS_TRUSTED_PROXIES ?? '').split(',').map((r) => r.trim()).filter(Boolean);
  const badRange = trustedProxies.find((r) => parseCidr(r) === undefined);
  if (badRange !== undefined) throw new ConfigError(`TLS_TRUSTED_PROXIES must be a comma-separated list of addresses or CIDR ranges, got "${badRange.slice(0, 80)}"`);
  // one without the other would either believe nobody or believe a header nobody sets
  if (rawHeader && trustedProxies.length === 0) throw new ConfigError('TLS_CLIENT_CERT_HEADER needs TLS_TRUSTED_PROXIES: the addresses of the proxies that set it (e.g. 10.0.0.0/8)');
  if (!rawHeader && trustedProxies.length > 0) throw new ConfigError('TLS_TRUSTED_PROXIES is only used with TLS_CLIENT_CERT_HEADER: set the header name too');
  // a CA list nobody's certificate can reach would make every tls_client_auth client fail puzzlingly
  if (caFile && !rawHeader && !tls) throw new ConfigError('TLS_CLIENT_CA_FILE needs a source of client certificates: TLS_CERT_FILE/TLS_KEY_FILE or TLS_CLIENT_CERT_HEADER');
  const mtlsBaseUrl = env.MTLS_BASE_URL ? url('MTLS_BASE_URL', env.MTLS_BASE_URL, ['https:']) : undefined;
  if (mtlsBaseUrl !== undefined) {
    const u = new URL(mtlsBaseUrl);
    if (u.pathname !== '/' || u.search || u.hash || mtlsBaseUrl.endsWith('/')) throw new ConfigError(`MTLS_BASE_URL must be an origin without path or trailing slash, e.g. https://mtls.auth.example.com, got "${redactUrl(mtlsBaseUrl)}"`);
    if (u.origin === issuer) throw new ConfigError('MTLS_BASE_URL is ISSUER: leave it unset when clients present certificates at ISSUER itself');
    if (!rawHeader && !tls) throw new ConfigError('MTLS_BASE_URL needs a source of client certificates: TLS_CERT_FILE/TLS_KEY_FILE or TLS_CLIENT_CERT_HEADER');
  }
  return { caFile, proxyHeader: rawHeader?.toLowerCase(), trustedProxies, mtlsBaseUrl: mtlsBaseUrl && new URL(mtlsBaseUrl).origin };
}

export function loadConfig(env: Env = process.env): Config {
  const port = integer(env, 'PORT', 3000, 0, 65535);
  const tls = tlsSettings(env);
  const issuerRaw = env.ISSUER || `${tls ? 'https' : 'http'}://localhost:${port}`;
  url('ISSUER', issuerRaw, ['http:', 'https:']);
  // a server that terminates TLS is reached with https: an http issuer would name URLs it never serves
  if (tls && !issuerRaw.startsWith('https:')) throw new ConfigError(`ISSUER must be https when Sigil terminates TLS (TLS_CERT_FILE), got "${redactUrl(issuerRaw)}"`);
  const issuerUrl = new URL(issuerRaw);
  // Endpoints are served at the root; an issuer with a path, query or fragment would make every
  // URL-bound check (htu, assertion aud) disagree with the routes, so it is refused outright.
  if (issuerUrl.pathname !== '/' || issuerUrl.search || issuerUrl.hash || issuerRaw.endsWith('/')) {
    throw new ConfigError(`ISSUER must be an origin without path or trailing slash, e.g. https://auth.example.com, got "${redactUrl(issuerRaw)}"`);
  }
  const databaseUrl = env.DATABASE_URL ? url('DATABASE_URL', env.DATABASE_URL, ['postgres:', 'postgresql:']) : undefined;
  const databaseDirectUrl = env.DATABASE_DIRECT_URL ? url('DATABASE_DIRECT_URL', env.DATABASE_DIRECT_URL, ['postgres:', 'postgresql:']) : undefined;
  // without DATABASE_URL the storage is embedded: a direct URL would silently go unused
  if (databaseDirectUrl && !databaseUrl) throw new ConfigError('DATABASE_DIRECT_URL needs DATABASE_URL (without it Sigil uses embedded storage)');
  const redisCluster = redisClusterSettings(env);
  if (!redisCluster && env.REDIS_URL?.includes(',')) throw new ConfigError('REDIS_URL names several nodes: set REDIS_CLUSTER=true for a Redis Cluster');
  const redisUrl = env.REDIS_URL && !redisCluster ? url('REDIS_URL', env.REDIS_URL, ['redis:', 'rediss:']) : env.REDIS_URL || undefined;
  const logLevel = oneOf(env, 'LOG_LEVEL', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
  const http = httpLimits(env);

  return {
    port,
    host: env.HOST || undefined,
    issuer: issuerUrl.origin,
    databaseUrl,
    databaseDirectUrl,
    redisUrl,
    redisCluster,
    redisPrefix: env.REDIS_PREFIX || 'sigil:',
    dataDir: path.resolve(env.DATA_DIR || './data'),
    accessTokenTtl: integer(env, 'ACCESS_TOKEN_TTL', 300, 1, MAX_ACCESS_TOKEN_TTL_SECONDS),
    refreshTokenTtl: integer(env, 'REFRESH_TOKEN_TTL', 86400, 60, 365 * 86400),
    // at most the depth every chain check reads (ACT_WALK_LIMIT in src/tokens/delegation-chain.ts)
    maxDelegationDepth: integer(env, 'MAX_DELEGATION_DEPTH', 5, 1, DELEGATION_DEPTH_CEILING),
    logLevel,
    signingAlg: oneOf<SigningAlg>(env, 'SIGNING_ALG', 'ES256', SIGNING_ALGS),
    dpopRequireNonce: oneOf(env, 'DPOP_NONCE', 'off', ['off', 'required']) === 'required',
    jwksMaxAgeSeconds: integer(env, 'JWKS_MAX_AGE', 300, 0, 86400),
    statusListTtlSeconds: integer(env, 'STATUS_LIST_TTL', 30, 1, 3600),
    jwksUri: jwksUriSettings(env),
    kek: env.SIGIL_KEK || undefined,
    keysDir: path.resolve(env.SIGIL_KEYS_DIR || './keys'),
    assertionAudTokenEndpoint: oneOf(env, 'ASSERTION_AUD_TOKEN_ENDPOINT', 'false', ['true', 'false']) === 'true',
    svidMaxLifetimeSeconds: integer(env, 'SVID_MAX_LIFETIME', 900, 60, 3600),
    http,
    statusStreams: statusStreamLimits(env, http),
    metrics: metricsSettings(env, port),
    spiffeBundles: spiffeBundleSettings(env),
    tls,
    clientCertificates: clientCertificateSettings(env, issuerUrl.origin, tls !== undefined),
  };
}
