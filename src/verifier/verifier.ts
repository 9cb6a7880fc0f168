// createVerifier: Sigil's access tokens checked in the API's own process. The order of the checks is
// the order of their cost: the token (its signature checked once, then remembered by its SHA-256
// until it expires), the DPoP proof (one signature check per request), the scopes, the status list
// (cached), and last the replay record of the proof, so a refused request records nothing.
import { createHash, timingSafeEqual } from 'node:crypto';
import { ProofChecker, ProofNonces, ProofProblem, normalizedEndpoint } from './dpop.js';
import { refusal, VerifierError, type Challenge, type VerifierErrorCode } from './errors.js';
import { IssuerState, type FetchLike, type IssuerKey, type LocalJwks } from './issuer.js';
import { ALGORITHMS, hasType, parseJws, SUPPORTED_ALGORITHMS } from './jws.js';
import { MemoryReplayStore, type ReplayStore } from './replay.js';
import { StatusLists } from './status-lists.js';
import { introspectionFallback, type IntrospectionClient } from './introspection.js';
import { certificateThumbprint, MalformedCertificate, toCertificate, type CertificateInput } from './certificate.js';

export interface AccessTokenClaims {
  iss: string;
  sub: string;
  client_id: string;
  aud: string | string[];
  exp: number;
  iat: number;
  jti: string;
  scope?: string;
  cnf?: { jkt?: string; 'x5t#S256'?: string; [k: string]: unknown };
  /** RFC 8693 delegation chain: the current actor, its own `act` nesting the earlier ones */
  act?: { sub: string; act?: unknown; [k: string]: unknown };
  status?: { status_list?: { idx: number; uri: string } };
  [claim: string]: unknown;
}

/** Node's IncomingHttpHeaders, a Fetch Headers, or a plain record */
export type HeadersLike = Headers | Record<string, string | string[] | undefined>;

export interface RequestLike {
  method: string;
  /** the public URL the client called (absolute), or a path resolved against `baseUrl` */
  url: string;
  headers: HeadersLike;
  /**
   * The client certificate of the request's TLS connection (RFC 8705 §3): needed for a token bound
   * to one (cnf.x5t#S256). fromNodeRequest() sets it from a TLS socket; behind a proxy, pass the
   * proxy's header value (e.g. nginx $ssl_client_escaped_cert), but only from a proxy you trust.
   */
  clientCertificate?: CertificateInput;
}

export interface VerifierOptions {
  /** the issuer identifier, exactly as in the tokens and the discovery document */
  issuer: string;
  /** the audience this API answers to (the token's `aud` must contain it) */
  audience: string;
  /** scopes every request must have (a call may add more) */
  scopes?: readonly string[];
  /** public origin (and path prefix) of this API, for request URLs given as paths */
  baseUrl?: string;
  /** accept plain Bearer tokens that carry no `cnf` (default false: DPoP required) */
  allowBearer?: boolean;
  /** access-token algorithms accepted (default: ES256, ES384, EdDSA, PS256, RS256; always also the key's own alg) */
  algorithms?: readonly string[];
  /**
   * The issuer's public JWKS read in this process instead of fetched (an API running inside the
   * issuer, as Sigil's admin API does): a new array whenever the keys change. No JWKS is fetched.
   */
  keys?: LocalJwks;
  dpop?: {
    /** the proof algorithms accepted, instead of the discovery document's dpop_signing_alg_values_supported */
    algorithms?: readonly string[];
    /** how old a proof may be (default 60 s) */
    maxAgeSeconds?: number;
    /** how far ahead its iat may be (default 5 s) */
    skewSeconds?: number;
    /** where proof jtis are recorded (default: in this process) */
    replayStore?: ReplayStore;
    /** require resource-server nonces (RFC 9449 §9), made from this secret (≥ 16 bytes; the same on every replica) */
    nonceSecret?: string | Uint8Array;
    /** how long a nonce lasts (default 60 s; the previous one is accepted too) */
    nonceLifetimeSeconds?: number;
  };
  status?: {
    /** check the token's status list (default true) */
    enabled?: boolean;
    /**
     * Whether a token is revoked, answered in this process (an API running inside the issuer) in place
     * of its status list: no list is fetched and no change stream is opened.
     */
    revoked?: (claims: AccessTokenClaims) => boolean | Promise<boolean>;
    /** keep the issuer's change stream open (default true) */
    events?: boolean;
    /** when a list cannot be had: refuse (default) or ask the issuer's introspection endpoint */
    onUnavailable?: 'fail_closed' | { introspect: IntrospectionClient };
    /** reconnect backoff of the change stream */
    backoffMs?: { min: number; max: number };
  };
  /** how long after a JWKS fetch an unknown kid may cause another (default 10 s) */
  jwksRefetchCooldownSeconds?: number;
  /** the realm named in challenges */
  realm?: string;
  /** for tests and custom transports */
  fetch?: FetchLike;
  now?: () => number;
  log?: (event: string, detail?: Record<string, unknown>) => void;
}

export interface VerifyOptions {
  /** scopes this call needs, beside the verifier's */
  scopes?: readonly string[];
  /** the request's client certificate, in place of RequestLike.clientCertificate (e.g. with a Fetch Request) */
  clientCertificate?: CertificateInput;
}

export interface Verifier {
  (request: RequestLike | Request, options?: VerifyOptions): Promise<AccessTokenClaims>;
  /** a fresh nonce for a `DPoP-Nonce` header on a successful answer (when nonces are on) */
  nextNonce(): string | undefined;
  /** stops the change stream and timers, closes the replay store */
  close(): Promise<void>;
  /** loads metadata and keys now, so the first request does not wait */
  ready(): Promise<void>;
  readonly stats: { readonly jwksFetches: number; readonly statusListFetches: number; readonly statusStreamReady: boolean };
}

/** the default algorithms of a DPoP proof when the issuer advertises none */
const DEFAULT_DPOP_ALGS = ['ES256', 'EdDSA', 'PS256', 'RS256'];
const MAX_TOKEN_LENGTH = 16_384;
const TOKEN_CACHE_SIZE = 10_000;
const AUTHORIZATION = /^(DPoP|Bearer) +([A-Za-z0-9\-._~+/]+=*) *$/i;

function header(headers: HeadersLike, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  // Node's headers are lower-case already; a hand-made record may not be
  let v = record[name];
  if (v === undefined) for (const k in record) if (k.toLowerCase() === name) v = record[k];
  // node keeps repeated unknown headers as one value joined by ", "; an array means several
  return Array.isArray(v) ? v.join(', ') : v;
}

interface CachedToken {
  claims: AccessTokenClaims;
  expMs: number;
}

export function createVerifier(options: VerifierOptions): Verifier {
  const now = options.now ?? Date.now;
  const fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  if (!options.issuer || !options.audience) throw new TypeError('createVerifier needs issuer and audience');
  const issuer = new IssuerState(options.issuer, fetchImpl, now, (options.jwksRefetchCooldownSeconds ?? 10) * 1000, options.keys);
  const tokenAlgs = new Set((options.algorithms ?? ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256']).filter((a) => ALGORITHMS[a]));
  const dpopOpts = options.dpop ?? {};
  const replay = dpopOpts.replayStore ?? new MemoryReplayStore({ now });
  const maxAge = dpopOpts.maxAgeSeconds ?? 60;
  const skew = dpopOpts.skewSeconds ?? 5;
  const nonces = dpopOpts.nonceSecret ? new ProofNonces(dpopOpts.nonceSecret, dpopOpts.nonceLifetimeSeconds ?? 60, now) : undefined;
  const statusEnabled = options.status?.enabled ?? true;
  const localStatus = options.status?.revoked;
  const statusLists = new StatusLists({ issuer, fetch: fetchImpl, now, events: options.status?.events ?? true, backoffMs: options.status?.backoffMs, log: options.log });
  const onUnavailable = options.status?.onUnavailable ?? 'fail_closed';
  const fallback = onUnavailable === 'fail_closed' ? undefined : introspectionFallback(onUnavailable.introspect, issuer, fetchImpl);
  const base = options.baseUrl ? new URL(options.baseUrl) : undefined;
  const requiredScopes = options.scopes ?? [];
  const tokens = new Map<string, CachedToken>();

  // set from the discovery document (the DPoP algorithms the issuer allows)
  let challenge: Challenge | undefined;
  let proofs: ProofChecker | undefined;

  async function setup(): Promise<{ challenge: Challenge; proofs: ProofChecker }> {
    if (challenge && proofs) return { challenge, proofs };
    let advertised: readonly string[] | undefined = dpopOpts.algorithms;
    if (!advertised) {
      let md;
      try {
        md = await issuer.metadata();
      } catch {
        // not one request can be checked before the issuer has been reached once
        throw refusal({ algs: DEFAULT_DPOP_ALGS, bearer: options.allowBearer ?? false, realm: options.realm }, 'temporarily_unavailable', 'the issuer cannot be reached', { retryAfter: 5 });
      }
      advertised = Array.isArray(md.dpop_signing_alg_values_supported) ? md.dpop_signing_alg_values_supported : DEFAULT_DPOP_ALGS;
    }
    // only asymmetric algorithms this library implements, whatever the document says
    const algs = advertised.filter((a) => SUPPORTED_ALGORITHMS.includes(a));
    challenge = { algs, bearer: options.allowBearer ?? false, realm: options.realm };
    proofs = new ProofChecker({ algorithms: new Set(algs), maxAgeSeconds: maxAge, skewSeconds: skew, nonces });
    return { challenge, proofs };
  }

  const endpointOf = (url: string): string => {
    const absolute = /^https?:\/\//i.test(url) ? url : base ? new URL(url.replace(/^\/+/, ''), base.href.endsWith('/') ? base.href : `${base.href}/`).href : undefined;
    if (!absolute) throw new TypeError(`the request URL ${url} is not absolute and no baseUrl is configured`);
    const endpoint = normalizedEndpoint(absolute);
    if (!endpoint) throw new TypeError(`the request URL ${url} is not an http(s) URL`);
    return endpoint;
  };

  async function verifyToken(token: string, c: Challenge, nowMs: number): Promise<AccessTokenClaims> {
    const bad = (description: string) => refusal(c, 'invalid_token', description);
    const jws = parseJws(token, MAX_TOKEN_LENGTH);
    if (!jws) throw bad('the access token is not a JWT');
    const { header: h, payload: p } = jws;
    if (!hasType(h, 'at+jwt')) throw bad('the access token typ must be at+jwt');
    const alg = typeof h.alg === 'string' ? h.alg : '';
    const spec = tokenAlgs.has(alg) ? ALGORITHMS[alg] : undefined;
    if (!spec) throw bad('the access token alg is not allowed');
    if (h.crit !== undefined) throw bad('the access token crit header is not supported');
    const kid = typeof h.kid === 'string' ? h.kid : undefined;
    const usable = (k: IssuerKey) => k.kty === spec.kty && (k.alg === undefined || k.alg === alg) && (k.crv === undefined || spec.crv === undefined || k.crv === spec.crv);
    const cached = issuer.cachedKeys();
    let keys = cached?.filter((k) => (kid === undefined || k.kid === kid) && usable(k));
    if (!keys?.length) {
      try {
        keys = (await issuer.keysFor(kid)).filter(usable);
      } catch {
        throw refusal(c, 'temporarily_unavailable', "the issuer's keys cannot be fetched", { retryAfter: 5 });
      }
    }
    // without a kid, only an unambiguous key is tried
    if (!keys.length || (kid === undefined && keys.length > 1)) throw bad('the access token is signed by an unknown key');
    const signed = Buffer.from(jws.signingInput, 'ascii');
    if (!keys.some((k) => spec.verify(signed, k.key, jws.signature))) throw bad('the access token signature is invalid');

    const nowS = Math.floor(nowMs / 1000);
    if (p.iss !== options.issuer) throw bad('the access token is from another issuer');
    const aud = p.aud;
    if (!(aud === options.audience || (Array.isArray(aud) && aud.includes(options.audience)))) throw bad('the access token is for another audience');
    if (typeof p.exp !== 'number') throw bad('the access token has no exp');
    if (p.exp <= nowS) throw bad('the access token has expired');
    if (typeof p.iat !== 'number') throw bad('the access token has no iat');
    if (p.iat > nowS + skew) throw bad('the access token iat is in the future');
    if (p.nbf !== undefined && (typeof p.nbf !== 'number' || p.nbf > nowS + skew)) throw bad('the access token is not valid yet');
    for (const claim of ['sub', 'client_id', 'jti'] as const) if (typeof p[claim] !== 'string' || !p[claim]) throw bad(`the access token has no ${claim}`);
    if (p.scope !== undefined && typeof p.scope !== 'string') throw bad('the access token scope is not a string');
    return deepFreeze(p) as AccessTokenClaims;
  }

  function remember(ath: string, claims: AccessTokenClaims): void {
    if (tokens.size >= TOKEN_CACHE_SIZE) {
      const t = now();
      for (const [k, v] of tokens) if (v.expMs <= t) tokens.delete(k);
      if (tokens.size >= TOKEN_CACHE_SIZE) tokens.delete(tokens.keys().next().value!);
    }
    tokens.set(ath, { claims, expMs: claims.exp * 1000 });
  }

  async function checkStatus(claims: AccessTokenClaims, token: string, c: Challenge): Promise<void> {
    if (localStatus) {
      // the issuer's own answer covers every token, with a status list entry or not
      if (await localStatus(claims)) throw refusal(c, 'invalid_token', 'the access token has been revoked');
      return;
    }
    const ref = claims.status?.status_list;
    if (!ref) return;
    if (typeof ref.uri !== 'string' || !Number.isInteger(ref.idx) || ref.idx < 0) throw refusal(c, 'invalid_token', 'the access token status reference is malformed');
    const answer = await statusLists.status(ref.uri, ref.idx);
    if ('status' in answer) {
      if (answer.status !== 0) throw refusal(c, 'invalid_token', 'the access token has been revoked');
      return;
    }
    options.log?.('status_unavailable', { uri: ref.uri, reason: answer.unavailable });
    if (fallback) {
      let active: boolean;
      try {
        active = await fallback(token);
      } catch {
        throw refusal(c, 'temporarily_unavailable', 'the token status cannot be checked now', { retryAfter: 5 });
      }
      if (!active) throw refusal(c, 'invalid_token', 'the access token is not active');
      return;
    }
    throw refusal(c, 'temporarily_unavailable', 'the token status cannot be checked now', { retryAfter: 5 });
  }

  const verify = async function verify(request: RequestLike | Request, callOptions: VerifyOptions = {}): Promise<AccessTokenClaims> {
    const { challenge: c, proofs: checker } = challenge && proofs ? { challenge, proofs } : await setup();
    const headers = request.headers as HeadersLike;
    const authorization = header(headers, 'authorization');
    if (!authorization) throw refusal(c, 'missing_token', 'no access token');
    const m = AUTHORIZATION.exec(authorization);
    if (!m) throw refusal(c, 'invalid_token', 'the Authorization header is not DPoP or Bearer with a token');
    const isDpop = m[1]!.length === 4;
    const token = m[2]!;
    const certificate = callOptions.clientCertificate ?? (request as RequestLike).clientCertificate;
    // without a certificate only a DPoP-bound token can pass (unless plain Bearer is allowed): refused unread
    if (!isDpop && !c.bearer && certificate === undefined) throw refusal(c, 'invalid_token', 'a DPoP-bound access token and a DPoP proof are required');

    const nowMs = now();
    const ath = createHash('sha256').update(token).digest('base64url');
    let claims: AccessTokenClaims;
    const hit = tokens.get(ath);
    if (hit) {
      if (hit.expMs <= nowMs) {
        tokens.delete(ath);
        throw refusal(c, 'invalid_token', 'the access token has expired');
      }
      claims = hit.claims;
    } else {
      claims = await verifyToken(token, c, nowMs);
      remember(ath, claims);
    }

    const jkt = claims.cnf?.jkt;
    const x5t = claims.cnf?.['x5t#S256'];
    let proof: { key: string; ttlMs: number; iat: number } | undefined;
    if (x5t !== undefined) {
      // RFC 8705 §3: a certificate-bound token is a Bearer token usable only over a TLS connection
      // with the certificate it names; the challenge is Bearer's
      const cc = { ...c, bearer: true };
      if (typeof x5t !== 'string' || jkt !== undefined) throw refusal(cc, 'invalid_token', 'the access token confirmation (cnf) is malformed');
      if (isDpop) throw refusal(cc, 'invalid_token', 'a certificate-bound access token must be presented with the Bearer scheme');
      if (certificate === undefined) throw refusal(cc, 'invalid_token', 'the access token is bound to a client certificate and the request has none');
      let presented: string;
      try {
        presented = certificateThumbprint(toCertificate(certificate));
      } catch (err) {
        if (!(err instanceof MalformedCertificate)) throw err;
        throw refusal(cc, 'invalid_token', 'the client certificate of the request cannot be read');
      }
      if (!sameText(presented, x5t)) throw refusal(cc, 'invalid_token', 'the client certificate is not the one the access token is bound to');
    } else if (!isDpop) {
      // a certificate came, but the token is not bound to one: Bearer rules as without a certificate
      if (!c.bearer && claims.cnf === undefined) throw refusal(c, 'invalid_token', 'a DPoP-bound access token and a DPoP proof are required');
      // RFC 9449 §7.2: a DPoP-bound token is worthless to a thief only if Bearer never works for it
      if (claims.cnf !== undefined) throw refusal(c, 'invalid_token', 'a DPoP-bound access token must be presented with the DPoP scheme');
    } else {
      if (typeof jkt !== 'string') throw refusal(c, 'invalid_token', 'the access token is not DPoP-bound');
      const value = header(headers, 'dpop');
      if (!value) throw refusal(c, 'invalid_dpop_proof', 'a DPoP proof is required');
      // a JWS holds neither: a comma means two DPoP headers joined
      if (value.includes(',') || value.includes(' ')) throw refusal(c, 'invalid_dpop_proof', 'exactly one DPoP proof is allowed');
      let checked;
      try {
        checked = checker.check(value, request.method, endpointOf(request.url), ath, nowMs);
      } catch (err) {
        if (!(err instanceof ProofProblem)) throw err;
        if (err.nonceProblem) throw refusal(c, 'use_dpop_nonce', err.message, { dpopNonce: nonces!.next() });
        throw refusal(c, 'invalid_dpop_proof', err.message);
      }
      if (checked.thumbprint !== jkt) throw refusal(c, 'invalid_dpop_proof', "the DPoP proof key is not the token's cnf.jkt");
      proof = { key: `${checked.thumbprint}:${checked.jti}`, ttlMs: (checked.iat + maxAge + 1) * 1000 - nowMs, iat: checked.iat };
    }

    const needed = callOptions.scopes ? [...requiredScopes, ...callOptions.scopes] : requiredScopes;
    if (needed.length) {
      const granted = new Set((claims.scope ?? '').split(' '));
      const missing = needed.filter((s) => !granted.has(s));
      if (missing.length) throw refusal(c, 'insufficient_scope', `the access token lacks the scope ${missing.join(' ')}`, { scope: needed.join(' ') });
    }

    if (statusEnabled) await checkStatus(claims, token, c);

    if (proof) {
      let result;
      try {
        result = await replay.claim(proof.key, Math.max(proof.ttlMs, 1000), proof.iat);
      } catch {
        result = 'unavailable' as const;
      }
      if (result === 'replayed') throw refusal(c, 'invalid_dpop_proof', 'the DPoP proof has been used before');
      if (result === 'unavailable') throw refusal(c, 'temporarily_unavailable', 'the DPoP replay records cannot be checked now; retry with a new proof', { retryAfter: 2 });
    }
    return claims;
  } as Verifier;

  Object.assign(verify, {
    nextNonce: () => nonces?.next(),
    async close() {
      statusLists.close();
      await replay.close?.();
    },
    async ready() {
      await setup();
      await issuer.keys();
    },
  });
  Object.defineProperty(verify, 'stats', {
    get: () => ({ jwksFetches: issuer.jwksFetches, statusListFetches: statusLists.counts.fetches, statusStreamReady: statusLists.streamReady }),
  });
  return verify;
}

/** constant-time comparison of two thumbprints */
function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

export type { VerifierErrorCode };
export { VerifierError };
