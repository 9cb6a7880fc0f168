// A small private_key_jwt + DPoP client of Sigil (or any RFC 7523/9449 server). The CLI, the example
// client and the load generator all speak to the server through it, like any outside service would.
import { createHash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { CLIENT_SIGNING_ALGS, publicPart, type ClientSigningAlg } from '../keys/algorithms.js';

export type KeyAlg = ClientSigningAlg;

/** A private key ready to sign, with the public JWK that names it. */
export interface SigningKeyPair {
  alg: KeyAlg;
  kid?: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export function algForJwk(jwk: JWK): KeyAlg {
  if (jwk.alg && (CLIENT_SIGNING_ALGS as readonly string[]).includes(jwk.alg)) return jwk.alg as KeyAlg;
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'RSA') return 'PS256';
  throw new Error(`unsupported key type ${jwk.kty}/${jwk.crv ?? ''}`);
}

export async function keyPairFromPrivateJwk(jwk: JWK): Promise<SigningKeyPair> {
  if (!jwk.d) throw new Error('the key file holds no private key');
  const alg = algForJwk(jwk);
  const privateKey = (await importJWK(jwk, alg)) as CryptoKey;
  const publicJwk = publicPart(jwk);
  return { alg, kid: jwk.kid, privateKey, publicJwk };
}

/**
 * RFC 7523 client assertion as draft-ietf-oauth-rfc7523bis has it: aud = the issuer identifier as its
 * sole value (never the token endpoint URL), typ client-authentication+jwt, iss = sub = client_id,
 * short-lived, unique jti. `issuer` is the server's issuer from its discovery document.
 */
export async function clientAssertion(key: SigningKeyPair, clientId: string, issuer: string, lifetimeSeconds = 60): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: key.alg, typ: 'client-authentication+jwt', ...(key.kid ? { kid: key.kid } : {}) })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(issuer)
    .setIssuedAt(now)
    .setExpirationTime(now + lifetimeSeconds)
    .setJti(randomUUID())
    .sign(key.privateKey);
}

/** RFC 9449 proof for one request; `accessToken` adds `ath` when calling a protected resource. */
export async function dpopProof(key: SigningKeyPair, method: string, url: string, opts: { accessToken?: string; nonce?: string } = {}): Promise<string> {
  const { kid: _kid, alg: _alg, use: _use, key_ops: _ops, ...jwk } = key.publicJwk;
  return new SignJWT({
    htm: method,
    htu: url,
    ...(opts.accessToken ? { ath: createHash('sha256').update(opts.accessToken).digest('base64url') } : {}),
    ...(opts.nonce ? { nonce: opts.nonce } : {}),
  })
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk })
    .setIssuedAt()
    .setJti(randomUUID())
    .sign(key.privateKey);
}

export async function thumbprint(key: SigningKeyPair): Promise<string> {
  return calculateJwkThumbprint(key.publicJwk);
}

export interface ServerMetadata {
  issuer: string;
  token_endpoint: string;
  jwks_uri: string;
  [k: string]: unknown;
}

export async function discover(baseUrl: string): Promise<ServerMetadata> {
  const res = await fetch(new URL('/.well-known/oauth-authorization-server', baseUrl));
  if (!res.ok) throw new Error(`discovery at ${baseUrl} answered ${res.status}`);
  return (await res.json()) as ServerMetadata;
}

export interface TokenRequest {
  /** where to send the request (may differ from metadata.token_endpoint behind a balancer) */
  tokenEndpoint: string;
  /** the issuer-based token endpoint URL for htu; defaults to tokenEndpoint */
  htu?: string;
  /** the server's issuer identifier: the assertion's aud */
  issuer: string;
  /** the client_id (with `assertion`: optional, the server finds the client from the workload identity) */
  clientId?: string;
  /** the client's registered key: signs a private_key_jwt assertion (give this or `assertion`) */
  clientKey?: SigningKeyPair;
  /**
   * A workload credential instead of a registered key: a JWT-SVID (`jwt-spiffe`), or a JWT from a
   * trusted issuer such as a Kubernetes service-account token or a CI job's OIDC token (`jwt-bearer`).
   * `value` is called for every request, so a file the platform rotates is read afresh.
   */
  assertion?: { type: 'jwt-spiffe' | 'jwt-bearer'; value: () => string | Promise<string> };
  /** the DPoP key; omit to ask for a bearer token (only clients created with --dpop optional) */
  dpopKey?: SigningKeyPair;
  grantType?: string;
  scope?: string;
  resource?: string;
  extra?: Record<string, string>;
}

export class TokenError extends Error {
  constructor(readonly status: number, readonly body: { error?: string; error_description?: string }) {
    super(`${status} ${body.error ?? 'error'}${body.error_description ? `: ${body.error_description}` : ''}`);
  }
}

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope?: string;
  [k: string]: unknown;
}

/** The client authentication parameters of a request: a private_key_jwt assertion, or the workload's own credential. */
async function clientAuthentication(req: TokenRequest): Promise<Record<string, string>> {
  if (req.assertion) {
    return {
      ...(req.clientId ? { client_id: req.clientId } : {}),
      client_assertion_type: `urn:ietf:params:oauth:client-assertion-type:${req.assertion.type}`,
      client_assertion: (await req.assertion.value()).trim(),
    };
  }
  if (!req.clientKey || !req.clientId) throw new Error('a token request needs clientId and clientKey, or an assertion');
  return {
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: await clientAssertion(req.clientKey, req.clientId, req.issuer),
  };
}

/** One token request, retrying once with the server's DPoP nonce when it asks for one (RFC 9449 §8). */
export async function requestToken(req: TokenRequest): Promise<TokenResponse> {
  let nonce: string | undefined;
  for (let attempt = 0; ; attempt++) {
    const body = new URLSearchParams({
      grant_type: req.grantType ?? 'client_credentials',
      ...(await clientAuthentication(req)),
      ...(req.scope ? { scope: req.scope } : {}),
      ...(req.resource ? { resource: req.resource } : {}),
      ...req.extra,
    });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    if (req.dpopKey) headers.dpop = await dpopProof(req.dpopKey, 'POST', req.htu ?? req.tokenEndpoint, { nonce });
    const res = await fetch(req.tokenEndpoint, { method: 'POST', headers, body });
    const json = (await res.json().catch(() => ({}))) as TokenResponse & { error?: string };
    if (res.ok) return json;
    const next = res.headers.get('dpop-nonce');
    if (json.error === 'use_dpop_nonce' && next && attempt === 0) {
      nonce = next;
      continue;
    }
    throw new TokenError(res.status, json);
  }
}

/** Generate a key pair; returns the private JWK (to keep) and the public JWKS (to register). */
export async function generateClientKey(alg: KeyAlg = 'ES256'): Promise<{ privateJwk: JWK; publicJwks: { keys: JWK[] } }> {
  const { generateKeyPair } = await import('jose');
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const jwk = await exportJWK(privateKey);
  const pub = publicPart(jwk);
  const kid = (await calculateJwkThumbprint(pub)).slice(0, 16);
  return { privateJwk: { ...jwk, kid, alg, use: 'sig' }, publicJwks: { keys: [{ ...pub, kid, alg, use: 'sig' }] } };
}
