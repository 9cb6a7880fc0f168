// Who vouches for workloads, answered now: the SPIFFE bundles of configured trust domains and the keys
// of configured federations, fetched only from the URLs the admin configured (never from a client),
// through the SSRF-safe bounded fetch, cached within bounds. Every answer starts from the trust
// configuration, so a removed trust domain or federation is unknown at once and its keys are dropped;
// a bundle that cannot be refreshed is used until a bound and then refused (fail closed).
import type { X509Certificate } from 'node:crypto';
import type { JWK } from 'jose';
import type { SpiffeBundleSettings } from '../config.js';
import type { Logger } from '../log.js';
import { jwksProblems } from '../clients/client-keys.js';
import { boundedGet } from '../outbound/bounded-fetch.js';
import { canonicalHost, destinationUrlProblem, OutboundRefused, type OutboundPurpose } from '../outbound/destination.js';
import { declaredLifetime, JwksUriFetcher, logged, type JwksUriPolicy } from '../outbound/jwks-fetch.js';
import { systemResolver, type Resolver } from '../outbound/pinned-resolution.js';
import { parseSpiffeBundle, type SpiffeBundle } from './spiffe-bundle.js';
import type { Federation, TrustAnswer, TrustConfig, TrustDomain, WorkloadTrust } from './types.js';

/** A TrustConfig that can also list its trust domains: then the background refresh fetches them before their first use. */
export interface ListableTrustConfig extends TrustConfig {
  trustDomains?(): Promise<TrustDomain[]>;
}

export interface FetchedTrustOptions {
  /** DNS resolution (tests play rebinding or split horizon with their own) */
  resolve?: Resolver;
  /** extra trusted CAs (tests: the test CA, in-process) */
  ca?: string | Buffer;
  /** the clock every cache rule reads, epoch ms (tests move it instead of waiting) */
  now?: () => number;
}

const BUNDLE_ENDPOINT: OutboundPurpose = { field: 'bundle endpoint', content: 'SPIFFE bundles' };
const DISCOVERY: OutboundPurpose = { field: 'openid-configuration', content: 'discovery documents' };
const JWKS_URI: OutboundPurpose = { field: 'jwks_uri', content: 'keys' };

/** fresh: usable and last refresh worked; stale: usable, refresh failing; closed: refused */
type Health = 'fresh' | 'stale' | 'closed';

interface DomainState {
  endpoint: string;
  bundle?: SpiffeBundle;
  /** when `bundle` was fetched (ms) */
  fetchedAt?: number;
  /** when `bundle` should have been replaced (ms): its clamped refresh hint; staleness counts from here */
  bundleDueAt?: number;
  /** the next network attempt (ms): the refresh time, or after a failure the retry time */
  nextAttemptAt: number;
  /** why the last attempt failed; undefined after a success */
  failure?: string;
  /** the highest spiffe_sequence seen from this endpoint */
  highestSequence?: number;
  inflight?: Promise<void>;
  /** the health last logged */
  health?: Health;
}

interface Discovery {
  jwksUri?: string;
  expiresAt: number;
  attemptAt: number;
  failure?: string;
  inflight?: Promise<void>;
}

function quoted(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * The WorkloadTrust over a TrustConfig (trust-store.ts implements it over Postgres and the bus). One
 * per process: its caches are what keep bundle endpoints and issuers from being hammered.
 */
export class FetchedWorkloadTrust implements WorkloadTrust {
  readonly #config: ListableTrustConfig;
  readonly #policy: JwksUriPolicy;
  readonly #bundles: SpiffeBundleSettings;
  readonly #log: Logger;
  readonly #resolve: Resolver;
  readonly #ca: string | Buffer | undefined;
  readonly #now: () => number;
  readonly #domains = new Map<string, DomainState>();
  /** trust domains announced by onChange but not yet looked at: the background refresh fetches them */
  readonly #announced = new Set<string>();
  readonly #keys: JwksUriFetcher;
  readonly #discovery = new Map<string, Discovery>();
  /** the key URLs each federation was read from, to forget them when it goes */
  readonly #federationUris = new Map<string, Set<string>>();

  constructor(config: ListableTrustConfig, policy: JwksUriPolicy, bundles: SpiffeBundleSettings, log: Logger, opts: FetchedTrustOptions = {}) {
    this.#config = config;
    this.#policy = { ...policy, allowedHosts: policy.allowedHosts.map(canonicalHost) };
    this.#bundles = bundles;
    this.#log = log;
    this.#resolve = opts.resolve ?? systemResolver;
    this.#ca = opts.ca;
    this.#now = opts.now ?? Date.now;
    this.#keys = new JwksUriFetcher(policy, log, { resolve: this.#resolve, ca: this.#ca, now: this.#now, validate: jwksProblems });
    config.onChange((change) => {
      if (change.kind === 'trust-domain') {
        this.#dropDomain(change.key);
        this.#announced.add(change.key);
      } else {
        this.#dropFederation(change.key);
      }
    });
  }

  async jwtAuthorities(trustDomain: string): Promise<TrustAnswer<JWK[]>> {
    const answer = await this.#bundle(trustDomain);
    if (!answer.ok) return answer;
    if (!answer.value.jwtAuthorities.length) return { ok: false, problem: `the SPIFFE bundle of trust domain ${trustDomain} has no JWT-SVID authorities (keys with use jwt-svid)` };
    return { ok: true, value: answer.value.jwtAuthorities.map((k) => ({ ...k })) };
  }

  async x509Authorities(trustDomain: string): Promise<TrustAnswer<X509Certificate[]>> {
    const answer = await this.#bundle(trustDomain);
    if (!answer.ok) return answer;
    if (!answer.value.x509Authorities.length) return { ok: false, problem: `the SPIFFE bundle of trust domain ${trustDomain} has no X.509-SVID authorities (keys with use x509-svid)` };
    return { ok: true, value: [...answer.value.x509Authorities] };
  }

  async federation(issuer: string): Promise<Federation | undefined> {
    const federation = await this.#config.federation(issuer);
    if (!federation) this.#dropFederation(issuer);
    return federation;
  }

  async federationKeys(issuer: string, kid: string | undefined): Promise<TrustAnswer<JWK[]>> {
    const federation = await this.federation(issuer);
    if (!federation) return { ok: false, problem: `${issuer} is not a configured federation` };
    const uri = federation.jwksUri !== undefined ? { ok: true as const, value: federation.jwksUri } : await this.#discover(issuer);
    if (!uri.ok) return uri;
    let uris = this.#federationUris.get(issuer);
    if (!uris) this.#federationUris.set(issuer, (uris = new Set()));
    uris.add(uri.value);
    let keys = await this.#keys.current(uri.value);
    // a kid no current key has: the issuer may have rotated; the fetcher refetches at most once per minimum interval
    if (keys.ok && kid !== undefined && !keys.keys.some((k) => k.kid === kid)) keys = await this.#keys.load(uri.value);
    if (!keys.ok) return { ok: false, problem: `the keys of federation ${issuer} could not be fetched: ${keys.problem}` };
    return { ok: true, value: keys.keys.map((k) => ({ ...k })) };
  }

  /**
   * The background job (run every few seconds, e.g. startHousekeeping([() => trust.refreshDue()], 5000)):
   * refreshes every known trust domain whose bundle is due, so requests rarely wait for a fetch, and
   * notices (and logs) a trust domain that goes stale or closed while nobody asks for it.
   */
  async refreshDue(): Promise<void> {
    const names = new Set([...this.#domains.keys(), ...this.#announced]);
    this.#announced.clear();
    if (this.#config.trustDomains) {
      // the store unreachable: the domains already known are still refreshed (each asks the store again)
      const listed = await this.#config.trustDomains().catch((err: unknown) => {
        this.#log.warn({ err: (err as Error).message }, 'trust domains could not be listed for the SPIFFE bundle refresh');
        return undefined;
      });
      for (const name of names) if (listed && !listed.some((t) => t.name === name)) this.#dropDomain(name);
      for (const t of listed ?? []) names.add(t.name);
    }
    await Promise.all([...names].map(async (name) => {
      try {
        await this.#bundle(name);
      } catch (err) {
        this.#log.warn({ trust_domain: name, err: (err as Error).message }, 'SPIFFE bundle refresh job failed');
      }
    }));
  }

  /** The current bundle of a configured trust domain, fetched when due; or why it cannot be used. */
  async #bundle(name: string): Promise<TrustAnswer<SpiffeBundle>> {
    const configured = await this.#config.trustDomain(name);
    if (!configured) {
      this.#dropDomain(name);
      return { ok: false, problem: `${name} is not a configured SPIFFE trust domain` };
    }
    let state = this.#domains.get(name);
    if (!state || state.endpoint !== configured.bundleEndpoint) {
      // a new endpoint is another source: nothing of the old one (keys, sequence) carries over
      state = { endpoint: configured.bundleEndpoint, nextAttemptAt: 0 };
      this.#domains.set(name, state);
    }
    if (state.inflight) await state.inflight;
    else if (this.#now() >= state.nextAttemptAt) await this.#attempt(name, state);
    // removed (or changed) while we waited: its bundle is no longer anyone's
    if (this.#domains.get(name) !== state) return { ok: false, problem: `${name} is not a configured SPIFFE trust domain` };
    const health = this.#observe(name, state);
    if (health === 'closed') return { ok: false, problem: this.#closedProblem(name, state) };
    return { ok: true, value: state.bundle! };
  }

  #attempt(name: string, state: DomainState): Promise<void> {
    state.inflight ??= this.#fetchBundle(name, state).finally(() => {
      state.inflight = undefined;
    });
    return state.inflight;
  }

  async #fetchBundle(name: string, state: DomainState): Promise<void> {
    const started = this.#now();
    const { refreshMinSeconds, refreshMaxSeconds } = this.#bundles;
    let bundle: SpiffeBundle;
    try {
      const answer = await boundedGet(state.endpoint, {
        policy: this.#policy, purpose: BUNDLE_ENDPOINT, resolve: this.#resolve, ca: this.#ca,
        accept: 'application/json, application/jwk-set+json', userAgent: 'sigil-spiffe-bundle',
      });
      let doc: unknown;
      try {
        doc = JSON.parse(answer.body.toString('utf8'));
      } catch {
        throw new OutboundRefused('bundle endpoint document is not JSON');
      }
      const parsed = parseSpiffeBundle(doc);
      if (!parsed.ok) throw new OutboundRefused(`bundle endpoint document is not an acceptable SPIFFE bundle: ${parsed.problems.join('; ')}`);
      bundle = parsed.bundle;
      if (bundle.sequence !== undefined && state.highestSequence !== undefined && bundle.sequence < state.highestSequence) {
        const problem = `bundle endpoint served spiffe_sequence ${bundle.sequence}, lower than ${state.highestSequence} seen before (a rollback); the newer bundle is kept`;
        this.#log.warn({ trust_domain: name, endpoint: logged(state.endpoint), sequence: bundle.sequence, highest: state.highestSequence }, 'SPIFFE bundle rollback refused');
        throw new OutboundRefused(problem);
      }
    } catch (err) {
      state.failure = err instanceof OutboundRefused ? err.message : 'bundle endpoint could not be fetched';
      // retried no sooner than the minimum interval: a failing endpoint is not hammered
      state.nextAttemptAt = started + refreshMinSeconds * 1000;
      return;
    }
    const now = this.#now();
    const interval = Math.min(Math.max(bundle.refreshHintSeconds ?? refreshMaxSeconds, refreshMinSeconds), refreshMaxSeconds);
    state.bundle = bundle;
    state.fetchedAt = now;
    state.bundleDueAt = now + interval * 1000;
    state.nextAttemptAt = state.bundleDueAt;
    state.failure = undefined;
    if (bundle.sequence !== undefined) state.highestSequence = Math.max(bundle.sequence, state.highestSequence ?? 0);
    this.#log.debug({ trust_domain: name, endpoint: logged(state.endpoint), jwt: bundle.jwtAuthorities.length, x509: bundle.x509Authorities.length, sequence: bundle.sequence, refresh_s: interval }, 'SPIFFE bundle fetched');
  }

  /** The trust domain's health now; a change is logged once (no keys, no URL query in the line). */
  #observe(name: string, state: DomainState): Health {
    const now = this.#now();
    const usable = state.bundle !== undefined && now < state.bundleDueAt! + this.#bundles.maxStalenessSeconds * 1000;
    const health: Health = !usable ? 'closed' : state.failure !== undefined ? 'stale' : 'fresh';
    if (health !== state.health) {
      const fields = { trust_domain: name, endpoint: logged(state.endpoint), problem: state.failure };
      if (health === 'closed') this.#log.warn(fields, 'SPIFFE trust domain fails closed: no usable bundle, its SVIDs are refused');
      else if (health === 'stale') this.#log.warn({ ...fields, until: new Date(state.bundleDueAt! + this.#bundles.maxStalenessSeconds * 1000).toISOString() }, 'SPIFFE bundle refresh failed; the last good bundle is used until the staleness bound');
      else if (state.health !== undefined) this.#log.info({ trust_domain: name, endpoint: logged(state.endpoint) }, 'SPIFFE bundle refreshed again');
      state.health = health;
    }
    return health;
  }

  #closedProblem(name: string, state: DomainState): string {
    const reason = state.failure ?? 'the bundle endpoint has not answered yet';
    if (state.fetchedAt === undefined) return `the SPIFFE bundle of trust domain ${name} could not be fetched: ${reason}`;
    return `the SPIFFE bundle of trust domain ${name} has not been refreshed since ${new Date(state.fetchedAt).toISOString()} and is past SPIFFE_BUNDLE_MAX_STALENESS (${this.#bundles.maxStalenessSeconds} s): ${reason}`;
  }

  #dropDomain(name: string): void {
    this.#domains.delete(name);
  }

  #dropFederation(issuer: string): void {
    this.#discovery.delete(issuer);
    for (const uri of this.#federationUris.get(issuer) ?? []) this.#keys.forget(uri);
    this.#federationUris.delete(issuer);
  }

  /**
   * The jwks_uri of a federation configured without one, from its OIDC discovery document (cached
   * like a JWKS; fetched at most once per minimum interval). A discovery that fails later keeps the
   * URL found before: the keys themselves are still fetched and bounded by their own cache rules.
   */
  async #discover(issuer: string): Promise<TrustAnswer<string>> {
    let entry = this.#discovery.get(issuer);
    if (entry?.inflight) await entry.inflight;
    const now = this.#now();
    if (!entry) {
      entry = { expiresAt: 0, attemptAt: -Infinity };
      this.#discovery.set(issuer, entry);
    }
    const e = entry;
    if (!(e.jwksUri !== undefined && now < e.expiresAt) && now - e.attemptAt >= this.#policy.minCacheSeconds * 1000) {
      e.attemptAt = now;
      e.inflight ??= this.#fetchDiscovery(issuer).then(
        ({ jwksUri, lifetime }) => {
          e.jwksUri = jwksUri;
          e.expiresAt = this.#now() + lifetime * 1000;
          e.failure = undefined;
        },
        (err: unknown) => {
          e.failure = err instanceof OutboundRefused ? err.message : 'openid-configuration could not be fetched';
          this.#log.warn({ issuer: logged(issuer), problem: e.failure }, 'federation discovery refused');
        },
      ).finally(() => {
        e.inflight = undefined;
      });
      await e.inflight;
    }
    if (this.#discovery.get(issuer) !== e) return { ok: false, problem: `${issuer} is not a configured federation` };
    if (e.jwksUri !== undefined) return { ok: true, value: e.jwksUri };
    return { ok: false, problem: `the discovery document of federation ${issuer} could not be used: ${e.failure ?? 'not fetched yet'}` };
  }

  async #fetchDiscovery(issuer: string): Promise<{ jwksUri: string; lifetime: number }> {
    const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const answer = await boundedGet(url, {
      policy: this.#policy, purpose: DISCOVERY, resolve: this.#resolve, ca: this.#ca,
      accept: 'application/json', userAgent: 'sigil-federation-discovery',
    });
    let doc: unknown;
    try {
      doc = JSON.parse(answer.body.toString('utf8'));
    } catch {
      throw new OutboundRefused('openid-configuration document is not JSON');
    }
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new OutboundRefused('openid-configuration document is not a JSON object');
    const d = doc as Record<string, unknown>;
    // OpenID Connect Discovery §4.3: a document naming another issuer is not this issuer's (a mix-up)
    if (d.issuer !== issuer) throw new OutboundRefused(`openid-configuration names issuer ${quoted(d.issuer)}, not ${quoted(issuer)}; they must be equal`);
    const problem = destinationUrlProblem(d.jwks_uri, this.#policy, JWKS_URI);
    if (problem) throw new OutboundRefused(`openid-configuration has a jwks_uri Sigil will not fetch: ${problem}`);
    const { minCacheSeconds, maxCacheSeconds } = this.#policy;
    const lifetime = Math.min(Math.max(declaredLifetime(answer.headers, this.#now()) ?? 0, minCacheSeconds), maxCacheSeconds);
    return { jwksUri: d.jwks_uri as string, lifetime };
  }
}

/**
 * What is wrong with a trust domain or federation about to be added (undefined: it can be used now):
 * its bundle or keys are fetched once, by the very rules that will serve them, through a throwaway
 * trust over that one candidate. So an operator learns of a typo or an unreachable endpoint at once,
 * not from the first refused workload.
 */
export async function trustCandidateProblem(
  candidate: { kind: 'trust-domain'; name: string; bundleEndpoint: string } | { kind: 'federation'; issuer: string; jwksUri?: string },
  policy: JwksUriPolicy, bundles: SpiffeBundleSettings, log: Logger, opts: FetchedTrustOptions = {},
): Promise<string | undefined> {
  const at = new Date();
  const only: TrustConfig = {
    trustDomain: async (name) => (candidate.kind === 'trust-domain' && name === candidate.name
      ? { name, bundleEndpoint: candidate.bundleEndpoint, createdBy: 'check', createdAt: at, updatedAt: at } : undefined),
    federation: async (issuer) => (candidate.kind === 'federation' && issuer === candidate.issuer
      ? { issuer, ...(candidate.jwksUri ? { jwksUri: candidate.jwksUri } : {}), maxLifetimeSeconds: 60, createdBy: 'check', createdAt: at, updatedAt: at } : undefined),
    onChange: () => {},
  };
  const trust = new FetchedWorkloadTrust(only, policy, bundles, log, opts);
  if (candidate.kind === 'federation') {
    const answer = await trust.federationKeys(candidate.issuer, undefined);
    return answer.ok ? undefined : answer.problem;
  }
  // a trust domain serves JWT-SVIDs, X.509-SVIDs (mTLS) or both: a bundle with authorities of either
  // kind is usable (the second question reads the bundle the first one fetched; nothing is fetched twice)
  const jwt = await trust.jwtAuthorities(candidate.name);
  if (jwt.ok) return undefined;
  const x509 = await trust.x509Authorities(candidate.name);
  if (x509.ok) return undefined;
  return /has no JWT-SVID authorities/.test(jwt.problem)
    ? `the SPIFFE bundle of trust domain ${candidate.name} has no authorities (keys with use jwt-svid or x509-svid)`
    : jwt.problem;
}
