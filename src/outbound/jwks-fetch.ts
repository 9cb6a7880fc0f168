// A client's keys at its jwks_uri: fetched through the bounded, pinned fetch (bounded-fetch.ts), checked
// as a JWKS, and cached for the partner's declared lifetime kept within bounds; a URL reaches the
// network at most once per minCacheSeconds. Plugged into oidc-provider as its `fetch`, and used by
// registration.
import type http from 'node:http';
import { compactVerify, decodeProtectedHeader, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Logger } from '../log.js';
import { CLIENT_SIGNING_ALGS } from '../clients/client-keys.js';
import { boundedGet, type FetchLimits } from './bounded-fetch.js';
import { canonicalHost, destinationUrlProblem, OutboundRefused, type DestinationPolicy, type OutboundPurpose } from './destination.js';
import { systemResolver, type Resolver } from './pinned-resolution.js';

export interface JwksUriPolicy extends DestinationPolicy, FetchLimits {
  /** a jwks_uri is fetched at most once per this many seconds (also: the shortest cache lifetime) */
  minCacheSeconds: number;
  /** the longest a fetched JWKS is trusted before it is fetched again, whatever its cache headers say */
  maxCacheSeconds: number;
}

const JWKS_URI: OutboundPurpose = { field: 'jwks_uri', content: 'keys' };

/** The checks a jwks_uri must pass before anything is fetched; a sentence saying what to fix, or undefined. */
export function jwksUriProblem(raw: unknown, policy: DestinationPolicy): string | undefined {
  return destinationUrlProblem(raw, policy, JWKS_URI);
}

export interface JwksFetcherOptions {
  /** DNS resolution (tests substitute their own to play a rebinding or a split-horizon name) */
  resolve?: Resolver;
  /** extra trusted CAs (tests with a self-signed partner) */
  ca?: string | Buffer;
  /** problems with a fetched document, as sentences (e.g. private members); empty when it is acceptable */
  validate?: (jwks: unknown) => string[];
  /** the clock cache lifetimes are read on, in epoch ms (tests move it instead of waiting) */
  now?: () => number;
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
export function logged(url: string): string {
  const u = URL.parse(url);
  return u ? `${u.protocol}//${u.host}${u.pathname}` : '(unparsable)';
}

/** seconds the partner asks a fetched JWKS (or discovery document) to be cached for, if it says */
export function declaredLifetime(headers: http.IncomingHttpHeaders, now: number): number | undefined {
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
  readonly #now: () => number;

  constructor(policy: JwksUriPolicy, log: Logger, opts: JwksFetcherOptions = {}) {
    this.#policy = { ...policy, allowedHosts: policy.allowedHosts.map(canonicalHost) };
    this.#log = log;
    this.#resolve = opts.resolve ?? systemResolver;
    this.#ca = opts.ca;
    this.#validate = opts.validate ?? (() => []);
    this.#now = opts.now ?? Date.now;
  }

  get policy(): JwksUriPolicy {
    return this.#policy;
  }

  /** oidc-provider's `fetch` option: the JWKS, or a rejection that becomes invalid_client. */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if ((init?.method ?? 'GET').toUpperCase() !== 'GET') throw new OutboundRefused('only GET requests are made to client URLs');
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
      return { ok: false, problem: err instanceof OutboundRefused ? err.message : 'jwks_uri could not be fetched' };
    }
  }

  /**
   * The keys of `url` as cached: network only when the cached document expired (or there is none),
   * at most once per minCacheSeconds. Federations (src/workload/trust.ts) read keys this way and
   * `load` them only for an unknown kid.
   */
  async current(url: string): Promise<{ ok: true; keys: JWK[] } | { ok: false; problem: string }> {
    try {
      return { ok: true, keys: (await this.#obtain(url, 'current')).keys };
    } catch (err) {
      return { ok: false, problem: err instanceof OutboundRefused ? err.message : 'jwks_uri could not be fetched' };
    }
  }

  /** Drops what is cached for `url` (its owner was removed): the next use fetches anew. */
  forget(url: string): void {
    this.#entries.delete(url);
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
      return `the client's jwks_uri could not be refreshed: ${err instanceof OutboundRefused ? err.message : 'fetch failed'}`;
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
    const now = this.#now();
    const unexpired = entry?.good && now < entry.good.expiresAt ? entry.good : undefined;
    if (want === 'current' && unexpired) return unexpired;
    if (entry && now - entry.attemptAt < this.#policy.minCacheSeconds * 1000) {
      if (unexpired) return unexpired;
      throw new OutboundRefused(entry.failure ?? 'jwks_uri could not be fetched');
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
        e.failure = err instanceof OutboundRefused ? err.message : 'jwks_uri could not be fetched';
        this.#log.warn({ jwks_uri: logged(url), problem: e.failure }, 'jwks_uri fetch refused');
      },
    ).finally(() => {
      e.inflight = undefined;
    });
    await e.inflight;
    if (e.failure !== undefined || !e.good) throw new OutboundRefused(e.failure ?? 'jwks_uri could not be fetched');
    return e.good;
  }

  async #download(url: string, signal?: AbortSignal): Promise<Good> {
    const started = Date.now();
    const answer = await boundedGet(url, {
      policy: this.#policy, purpose: JWKS_URI, resolve: this.#resolve, ca: this.#ca, signal,
      accept: 'application/jwk-set+json, application/json', userAgent: 'sigil-jwks-fetch',
    });
    let doc: unknown;
    try {
      doc = JSON.parse(answer.body.toString('utf8'));
    } catch {
      throw new OutboundRefused('jwks_uri document is not JSON');
    }
    const keys = (doc as { keys?: unknown } | null)?.keys;
    if (!doc || typeof doc !== 'object' || !Array.isArray(keys)) throw new OutboundRefused('jwks_uri document is not a JWKS (no "keys" array)');
    const problems = this.#validate(doc);
    if (problems.length) throw new OutboundRefused(`jwks_uri document: ${problems.join('; ')}`);
    const now = this.#now();
    const { minCacheSeconds, maxCacheSeconds } = this.#policy;
    const lifetime = Math.min(Math.max(declaredLifetime(answer.headers, now) ?? 0, minCacheSeconds), maxCacheSeconds);
    this.#log.debug({ jwks_uri: logged(url), address: answer.address, ms: Date.now() - started, keys: keys.length }, 'jwks_uri fetched');
    return { body: answer.body, keys: keys as JWK[], expiresAt: now + lifetime * 1000, imported: new Map() };
  }
}
