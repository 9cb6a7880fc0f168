// Fetching a client's jwks_uri without letting a partner aim Sigil at its own network (SSRF): https
// only, every resolved address checked and the connection pinned to the checked address (no DNS
// rebinding between check and connect), no redirects, a short deadline, a size limit, and cache
// lifetimes kept within bounds. Plugged into oidc-provider as its `fetch`, and used by registration.
import { lookup as dnsLookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP, isIPv4, isIPv6, type LookupFunction } from 'node:net';
import { compactVerify, decodeProtectedHeader, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Logger } from '../log.js';
import { CLIENT_SIGNING_ALGS } from '../clients/client-keys.js';

// ---------------------------------------------------------------------------------------------
// IP ranges

/** What an address is; only `public` is fetched from without an explicit allowance. */
export type AddressClass =
  | 'public' | 'unspecified' | 'loopback' | 'private' | 'link-local' | 'cgnat' | 'multicast' | 'broadcast'
  | 'documentation' | 'benchmarking' | 'reserved';

const V4_RANGES: Array<[string, number, AddressClass]> = [
  ['255.255.255.255', 32, 'broadcast'],
  ['0.0.0.0', 8, 'unspecified'], // "this network" (RFC 1122); 0.0.0.0 reaches the local host on many systems
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'cgnat'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'], // cloud metadata services live here (169.254.169.254)
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'reserved'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, 'reserved'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
];

function v4Int(bytes: ArrayLike<number>): number {
  return ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
}

const V4_TABLE = V4_RANGES.map(([base, bits, cls]) => {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { prefix: (v4Int(base.split('.').map(Number)) & mask) >>> 0, mask, cls };
});

function classifyV4(bytes: ArrayLike<number>): AddressClass {
  const n = v4Int(bytes);
  for (const r of V4_TABLE) if (((n & r.mask) >>> 0) === r.prefix) return r.cls;
  return 'public';
}

/** 16 bytes of an IPv6 address (a zone id such as %eth0 is ignored). */
export function ipv6Bytes(address: string): Uint8Array {
  const bare = address.replace(/%.*$/, '');
  if (!isIPv6(bare)) throw new TypeError(`not an IPv6 address: ${address}`);
  let text = bare.toLowerCase();
  let tail: number[] = [];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    tail = [(a << 8) | b, (c << 8) | d];
    text = text.slice(0, v4.index);
    if (!text.endsWith('::')) text = text.slice(0, -1); // the ':' before the dotted quad
  }
  const words = (s: string) => s.split(':').filter((w) => w !== '').map((w) => parseInt(w, 16));
  const gap = text.indexOf('::');
  const left = words(gap >= 0 ? text.slice(0, gap) : text);
  const right = gap >= 0 ? words(text.slice(gap + 2)) : [];
  const missing = 8 - left.length - right.length - tail.length;
  const groups = gap >= 0 ? [...left, ...new Array<number>(missing).fill(0), ...right, ...tail] : [...left, ...tail];
  if (groups.length !== 8) throw new TypeError(`not an IPv6 address: ${address}`);
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

function startsWith(bytes: Uint8Array, prefix: number[], bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const bit = 7 - (i & 7);
    if (((bytes[byte]! >> bit) & 1) !== (((prefix[byte] ?? 0) >> bit) & 1)) return false;
  }
  return true;
}

function classifyV6(b: Uint8Array): AddressClass {
  const zeros = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  if (zeros(0, 16)) return 'unspecified';
  if (zeros(0, 15) && b[15] === 1) return 'loopback';
  // ::ffff:a.b.c.d reaches a.b.c.d: judged as that IPv4 address
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return classifyV4(b.subarray(12));
  if (zeros(0, 12)) return 'reserved'; // deprecated IPv4-compatible ::a.b.c.d
  // NAT64 well-known prefix 64:ff9b::/96 translates to the embedded IPv4 address
  if (startsWith(b, [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0], 96)) return classifyV4(b.subarray(12));
  if (startsWith(b, [0x00, 0x64, 0xff, 0x9b, 0x00, 0x01], 48)) return 'private'; // local-use NAT64
  if (startsWith(b, [0x01, 0x00, 0, 0, 0, 0, 0, 0], 64)) return 'reserved'; // discard-only
  if (startsWith(b, [0x20, 0x01, 0x0d, 0xb8], 32)) return 'documentation';
  if (startsWith(b, [0x20, 0x01, 0x00], 23)) return 'reserved'; // IETF protocol assignments, Teredo
  if (startsWith(b, [0x20, 0x02], 16)) return 'reserved'; // 6to4 (deprecated, embeds any IPv4)
  if (startsWith(b, [0x3f, 0xff], 20)) return 'documentation';
  if (startsWith(b, [0xfc], 7)) return 'private'; // unique local
  if (startsWith(b, [0xfe, 0x80], 10)) return 'link-local';
  if (startsWith(b, [0xfe, 0xc0], 10)) return 'private'; // site-local (deprecated)
  if (startsWith(b, [0xff], 8)) return 'multicast';
  if (startsWith(b, [0x20], 3)) return 'public'; // 2000::/3, global unicast
  return 'reserved';
}

/** The class of an IPv4 or IPv6 address (literal text); throws a TypeError for anything else. */
export function classifyAddress(address: string): AddressClass {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (isIPv4(bare)) return classifyV4(bare.split('.').map(Number));
  if (isIPv6(bare.replace(/%.*$/, ''))) return classifyV6(ipv6Bytes(bare));
  throw new TypeError(`not an IP address: ${address}`);
}

// ---------------------------------------------------------------------------------------------
// Policy

export interface JwksUriPolicy {
  /** development only: http:// (and https://) to loopback hosts (localhost, 127.0.0.0/8, [::1]) */
  allowHttpLoopback: boolean;
  /** hostnames (or IP literals) that may resolve to internal addresses (private, loopback, link-local, CGNAT) */
  allowedHosts: readonly string[];
  /** the whole fetch (DNS, connect, TLS, answer, body) must finish within this */
  timeoutMs: number;
  /** the largest JWKS document accepted */
  maxBytes: number;
  /** a jwks_uri is fetched at most once per this many seconds (also: the shortest cache lifetime) */
  minCacheSeconds: number;
  /** the longest a fetched JWKS is trusted before it is fetched again, whatever its cache headers say */
  maxCacheSeconds: number;
}

const INTERNAL = new Set<AddressClass>(['private', 'loopback', 'link-local', 'cgnat']);

const ARTICLE: Record<AddressClass, string> = {
  public: 'a public', unspecified: 'an unspecified', loopback: 'a loopback', private: 'a private', 'link-local': 'a link-local',
  cgnat: 'a carrier-grade NAT (shared)', multicast: 'a multicast', broadcast: 'a broadcast', documentation: 'a documentation',
  benchmarking: 'a benchmarking', reserved: 'a reserved',
};

/** Host as compared: lower case, no brackets, no trailing dot. */
function canonicalHost(hostname: string): string {
  const h = hostname.toLowerCase();
  return (h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h).replace(/\.$/, '');
}

function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  return isIP(host) !== 0 && classifyAddress(host) === 'loopback';
}

/** Why `address` (that `host` is or resolves to) may not be fetched from; undefined when it may. */
export function addressProblem(host: string, address: string, policy: Pick<JwksUriPolicy, 'allowHttpLoopback' | 'allowedHosts'>): string | undefined {
  const cls = classifyAddress(address);
  if (cls === 'public') return undefined;
  if (cls === 'loopback' && policy.allowHttpLoopback && isLoopbackHost(host)) return undefined;
  if (INTERNAL.has(cls) && policy.allowedHosts.some((h) => canonicalHost(h) === host)) return undefined;
  const what = host === canonicalHost(address) ? `host ${host} is ${ARTICLE[cls]} address` : `host ${host} resolves to ${address}, ${ARTICLE[cls]} address`;
  return `jwks_uri ${what}; Sigil fetches keys only from public addresses`;
}

/** The checks a jwks_uri must pass before anything is fetched; a sentence saying what to fix, or undefined. */
export function jwksUriProblem(raw: unknown, policy: Pick<JwksUriPolicy, 'allowHttpLoopback' | 'allowedHosts'>): string | undefined {
  if (typeof raw !== 'string' || raw === '' || raw.length > 2000) return 'jwks_uri must be an absolute https URL of at most 2000 characters';
  const url = URL.parse(raw);
  if (!url) return `jwks_uri is not an absolute URL: ${JSON.stringify(raw.slice(0, 200))}`;
  if (raw.includes('#')) return 'jwks_uri must not have a fragment (#...)';
  if (url.username || url.password) return 'jwks_uri must not carry credentials (user:password@)';
  const host = canonicalHost(url.hostname);
  if (url.protocol === 'http:') {
    if (!(policy.allowHttpLoopback && isLoopbackHost(host))) {
      return policy.allowHttpLoopback ? 'jwks_uri must use https (plain http is allowed only for loopback hosts)' : 'jwks_uri must use https';
    }
  } else if (url.protocol !== 'https:') {
    return `jwks_uri must use https, not ${url.protocol.slice(0, -1)}`;
  }
  if (!host) return 'jwks_uri must name a host';
  if (isIP(host)) return addressProblem(host, host, policy);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Fetching

export class JwksUriRefused extends Error {
  override name = 'JwksUriRefused';
}

export interface ResolvedAddress {
  address: string;
  family: number;
}

export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

export interface JwksFetcherOptions {
  /** DNS resolution (tests substitute their own to play a rebinding or a split-horizon name) */
  resolve?: Resolver;
  /** extra trusted CAs (tests with a self-signed partner) */
  ca?: string | Buffer;
  /** problems with a fetched document, as sentences (e.g. private members); empty when it is acceptable */
  validate?: (jwks: unknown) => string[];
}

interface Good {
  body: Buffer;
  keys: JWK[];
  /** ms */
  expiresAt: number;
  imported: Map<string, Promise<CryptoKey | undefined>>;
}

interface Entry {
  /** when the last network attempt started (ms) */
  attemptAt: number;
  inflight?: Promise<void>;
  good?: Good;
  failure?: string;
}

const MAX_ENTRIES = 10_000;

/** A URL as logged: no query (it could carry something private), no credentials. */
function logged(url: string): string {
  const u = URL.parse(url);
  return u ? `${u.protocol}//${u.host}${u.pathname}` : '(unparsable)';
}

/** seconds the partner asks a fetched JWKS to be cached for, if it says */
function declaredLifetime(headers: http.IncomingHttpHeaders, now: number): number | undefined {
  const cc = String(headers['cache-control'] ?? '').toLowerCase();
  if (/(^|[\s,])(no-store|no-cache)([\s,=]|$)/.test(cc)) return 0;
  const maxAge = /(?:^|[\s,])max-age\s*=\s*"?(\d+)"?/.exec(cc);
  if (maxAge) return Number(maxAge[1]);
  if (headers.expires) {
    const at = Date.parse(String(headers.expires));
    return Number.isFinite(at) ? Math.max(0, (at - now) / 1000) : 0;
  }
  return undefined;
}

/**
 * One per server. oidc-provider calls `fetch` when a client's key set is empty or stale and an
 * assertion did not verify; a jwks_uri reaches the network at most once per `minCacheSeconds`
 * (concurrent callers share one request), so unknown kids cannot make Sigil hammer a partner.
 */
export class JwksUriFetcher {
  readonly #policy: JwksUriPolicy;
  readonly #log: Logger;
  readonly #resolve: Resolver;
  readonly #ca: string | Buffer | undefined;
  readonly #validate: (jwks: unknown) => string[];
  readonly #entries = new Map<string, Entry>();

  constructor(policy: JwksUriPolicy, log: Logger, opts: JwksFetcherOptions = {}) {
    this.#policy = { ...policy, allowedHosts: policy.allowedHosts.map(canonicalHost) };
    this.#log = log;
    this.#resolve = opts.resolve ?? systemResolver;
    this.#ca = opts.ca;
    this.#validate = opts.validate ?? (() => []);
  }

  get policy(): JwksUriPolicy {
    return this.#policy;
  }

  /** oidc-provider's `fetch` option: the JWKS, or a rejection that becomes invalid_client. */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if ((init?.method ?? 'GET').toUpperCase() !== 'GET') throw new JwksUriRefused('only GET requests are made to client URLs');
    const good = await this.#obtain(url, 'refresh', init?.signal ?? undefined);
    // stale again after the refetch interval: an unknown kid then triggers one refetch, no sooner
    return new Response(new Uint8Array(good.body), {
      status: 200,
      headers: { 'content-type': 'application/json', 'cache-control': `max-age=${this.#policy.minCacheSeconds}` },
    });
  };

  /** Fetch and check a jwks_uri now (registration): its keys, or why it cannot be used. */
  async load(url: string): Promise<{ ok: true; keys: JWK[] } | { ok: false; problem: string }> {
    try {
      return { ok: true, keys: (await this.#obtain(url, 'refresh')).keys };
    } catch (err) {
      return { ok: false, problem: err instanceof JwksUriRefused ? err.message : 'jwks_uri could not be fetched' };
    }
  }

  /**
   * oidc-provider keeps using keys fetched from a jwks_uri for as long as they verify. Sigil trusts
   * them only for the partner's cache lifetime (bounded): past it the document is fetched again and
   * the assertion must be signed by a key still in it. Undefined when it is; else why not.
   */
  async currentKeyProblem(url: string, assertion: string): Promise<string | undefined> {
    let good: Good;
    try {
      good = await this.#obtain(url, 'current');
    } catch (err) {
      return `the client's jwks_uri could not be refreshed: ${err instanceof JwksUriRefused ? err.message : 'fetch failed'}`;
    }
    let header: { alg?: string; kid?: string };
    try {
      header = decodeProtectedHeader(assertion);
    } catch {
      return 'the client assertion is not a JWS';
    }
    const alg = header.alg;
    if (!alg || !(CLIENT_SIGNING_ALGS as readonly string[]).includes(alg)) return 'the client assertion uses an algorithm Sigil does not accept';
    const candidates = good.keys.filter((k) => (header.kid === undefined || k.kid === header.kid)
      && (k.alg === undefined || k.alg === alg) && (k.use === undefined || k.use === 'sig'));
    for (const [i, jwk] of candidates.entries()) {
      const id = `${jwk.kid ?? i}:${alg}:${jwk.x ?? jwk.n ?? ''}`;
      let imported = good.imported.get(id);
      if (!imported) {
        imported = importJWK(jwk, alg).then((k) => k as CryptoKey, () => undefined);
        good.imported.set(id, imported);
      }
      const key = await imported;
      if (!key) continue;
      try {
        await compactVerify(assertion, key, { algorithms: [alg] });
        return undefined;
      } catch {
        // try the next candidate
      }
    }
    return 'the client assertion is not signed by a key the client\'s jwks_uri publishes now';
  }

  /**
   * The document for `url`. `refresh`: the caller wants the newest (network unless the URL was tried
   * within minCacheSeconds). `current`: any unexpired document will do (network only once it expired).
   */
  async #obtain(url: string, want: 'refresh' | 'current', signal?: AbortSignal): Promise<Good> {
    let entry = this.#entries.get(url);
    if (entry?.inflight) await entry.inflight;
    const now = Date.now();
    const unexpired = entry?.good && now < entry.good.expiresAt ? entry.good : undefined;
    if (want === 'current' && unexpired) return unexpired;
    if (entry && now - entry.attemptAt < this.#policy.minCacheSeconds * 1000) {
      if (unexpired) return unexpired;
      throw new JwksUriRefused(entry.failure ?? 'jwks_uri could not be fetched');
    }
    if (!entry) {
      if (this.#entries.size >= MAX_ENTRIES) this.#entries.delete(this.#entries.keys().next().value!);
      entry = { attemptAt: now };
      this.#entries.set(url, entry);
    }
    const e = entry;
    e.attemptAt = now;
    e.inflight = this.#download(url, signal).then(
      (good) => {
        e.good = good;
        e.failure = undefined;
      },
      (err: unknown) => {
        e.failure = err instanceof JwksUriRefused ? err.message : 'jwks_uri could not be fetched';
        this.#log.warn({ jwks_uri: logged(url), problem: e.failure }, 'jwks_uri fetch refused');
      },
    ).finally(() => {
      e.inflight = undefined;
    });
    await e.inflight;
    if (e.failure !== undefined || !e.good) throw new JwksUriRefused(e.failure ?? 'jwks_uri could not be fetched');
    return e.good;
  }

  async #download(url: string, outer?: AbortSignal): Promise<Good> {
    const policy = this.#policy;
    const syntax = jwksUriProblem(url, policy);
    if (syntax) throw new JwksUriRefused(syntax);
    const u = new URL(url);
    const host = canonicalHost(u.hostname);
    const controller = new AbortController();
    const aborted = new Promise<never>((_, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    });
    aborted.catch(() => {});
    const timer = setTimeout(() => controller.abort(new JwksUriRefused(`jwks_uri did not answer within ${policy.timeoutMs} ms`)), policy.timeoutMs);
    // oidc-provider gives its fetches a deadline of its own (2.5 s)
    const onOuterAbort = () => controller.abort(new JwksUriRefused('jwks_uri did not answer in time'));
    if (outer?.aborted) onOuterAbort();
    else outer?.addEventListener('abort', onOuterAbort, { once: true });
    try {
      // resolve once, check every address, then connect only to the checked one
      const addresses = isIP(host)
        ? [{ address: host, family: isIP(host) }]
        : await Promise.race([this.#resolve(host), aborted]).catch((err: unknown) => {
          if (err instanceof JwksUriRefused) throw err;
          throw new JwksUriRefused(`jwks_uri host ${host} does not resolve`);
        });
      if (!addresses.length) throw new JwksUriRefused(`jwks_uri host ${host} does not resolve`);
      for (const a of addresses) {
        const problem = addressProblem(host, a.address, policy);
        if (problem) throw new JwksUriRefused(problem);
      }
      const pinned = addresses[0]!;
      const started = Date.now();
      const result = await Promise.race([this.#request(u, host, pinned, controller.signal), aborted]);
      this.#log.debug({ jwks_uri: logged(url), address: pinned.address, ms: Date.now() - started, keys: result.keys.length }, 'jwks_uri fetched');
      return result;
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuterAbort);
    }
  }

  #request(u: URL, host: string, pinned: ResolvedAddress, signal: AbortSignal): Promise<Good> {
    const policy = this.#policy;
    const pin: LookupFunction = (_hostname, options, callback) => {
      if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: ResolvedAddress[]) => void)(null, [pinned]);
      else callback(null, pinned.address, pinned.family);
    };
    const secure = u.protocol === 'https:';
    return new Promise<Good>((resolve, reject) => {
      const req = (secure ? https : http).request({
        protocol: u.protocol,
        hostname: host,
        port: u.port || (secure ? 443 : 80),
        path: `${u.pathname}${u.search}`,
        method: 'GET',
        headers: { accept: 'application/jwk-set+json, application/json', 'user-agent': 'sigil-jwks-fetch', host: u.host },
        lookup: pin,
        agent: false,
        signal,
        ...(secure ? { servername: isIP(host) ? undefined : host, ca: this.#ca, rejectUnauthorized: true } : {}),
      }, (res) => {
        const status = res.statusCode ?? 0;
        const fail = (message: string) => {
          res.destroy();
          reject(new JwksUriRefused(message));
        };
        if (status >= 300 && status < 400) return fail(`jwks_uri answered with a redirect (${status}); redirects are not followed, register the final URL`);
        if (status !== 200) return fail(`jwks_uri answered ${status}, expected 200`);
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > policy.maxBytes) return fail(`jwks_uri document is larger than ${policy.maxBytes} bytes`);
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > policy.maxBytes) return fail(`jwks_uri document is larger than ${policy.maxBytes} bytes`);
          chunks.push(chunk);
        });
        res.on('error', () => reject(new JwksUriRefused('jwks_uri answer was cut off')));
        res.on('end', () => {
          if (size > policy.maxBytes) return;
          const body = Buffer.concat(chunks, size);
          let doc: unknown;
          try {
            doc = JSON.parse(body.toString('utf8'));
          } catch {
            return reject(new JwksUriRefused('jwks_uri document is not JSON'));
          }
          const keys = (doc as { keys?: unknown } | null)?.keys;
          if (!doc || typeof doc !== 'object' || !Array.isArray(keys)) return reject(new JwksUriRefused('jwks_uri document is not a JWKS (no "keys" array)'));
          const problems = this.#validate(doc);
          if (problems.length) return reject(new JwksUriRefused(`jwks_uri document: ${problems.join('; ')}`));
          const now = Date.now();
          const lifetime = Math.min(Math.max(declaredLifetime(res.headers, now) ?? 0, policy.minCacheSeconds), policy.maxCacheSeconds);
          resolve({ body, keys: keys as JWK[], expiresAt: now + lifetime * 1000, imported: new Map() });
        });
      });
      req.on('error', (err) => {
        if (err instanceof JwksUriRefused) return reject(err);
        const code = (err as NodeJS.ErrnoException).code;
        if (signal.aborted) return reject(signal.reason instanceof JwksUriRefused ? signal.reason : new JwksUriRefused(`jwks_uri did not answer within ${policy.timeoutMs} ms`));
        if (code && /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO|HOSTNAME|ERR_TLS/.test(code)) return reject(new JwksUriRefused(`jwks_uri TLS certificate is not valid for ${host} (${code})`));
        reject(new JwksUriRefused(`jwks_uri could not be reached${code ? ` (${code})` : ''}`));
      });
      req.end();
    });
  }
}
