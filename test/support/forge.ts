// Hand-made JWTs and raw token requests for the security tests: every header member and claim is
// the test's to choose (or to leave out), and every request field is sent exactly as given.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { CompactSign, type CompactJWSHeaderParameters, type CryptoKey, type JWK } from 'jose';
import type { SigningKeyPair } from '../../src/client/oauth-client.js';
import { eventually } from './wait.js';

export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export const epoch = (): number => Math.floor(Date.now() / 1000);

export function b64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** `alg: none` and any other unsigned shape: header.payload. (empty signature) */
export function unsignedJwt(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  return `${b64url(header)}.${b64url(payload)}.`;
}

/** Signs exactly the header and payload given (members set to undefined are left out). */
export async function signJws(header: Record<string, unknown>, payload: Record<string, unknown>, key: CryptoKey | Uint8Array): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(JSON.parse(JSON.stringify(header)) as CompactJWSHeaderParameters)
    .sign(key);
}

export interface ForgeOptions {
  /** merged over the defaults; a member set to undefined is removed */
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
  /** sign with this instead of the pair's private key (a wrong key, an HMAC secret) */
  signWith?: CryptoKey | Uint8Array;
}

/** An RFC 7523 client assertion: valid by default (iss = sub = client_id, 60 s, unique jti). */
export async function forgeAssertion(key: SigningKeyPair, clientId: string, aud: string | string[], opts: ForgeOptions = {}): Promise<string> {
  const t = epoch();
  const claims = { iss: clientId, sub: clientId, aud, iat: t, exp: t + 60, jti: randomUUID(), ...opts.claims };
  const header = { alg: key.alg, kid: key.kid, ...opts.header };
  return signJws(header, claims, opts.signWith ?? key.privateKey);
}

/** The public JWK as it goes into a DPoP header (no kid/alg/use/key_ops). */
export function dpopJwk(key: SigningKeyPair): JWK {
  const { kid: _kid, alg: _alg, use: _use, key_ops: _ops, ...jwk } = key.publicJwk;
  return jwk;
}

/** An RFC 9449 proof: valid by default for (htm, htu), iat now, unique jti. */
export async function forgeProof(key: SigningKeyPair, htm: string, htu: string, opts: ForgeOptions = {}): Promise<string> {
  const claims = { htm, htu, iat: epoch(), jti: randomUUID(), ...opts.claims };
  const header = { alg: key.alg, typ: 'dpop+jwt', jwk: dpopJwk(key), ...opts.header };
  return signJws(header, claims, opts.signWith ?? key.privateKey);
}

/**
 * A key anyone can sign with, from its public half alone: the JWK, and a JWS over any header and
 * payload that a verifier accepting the key would accept (issue 10, finding 6).
 */
export interface WeakKey {
  alg: 'RS256' | 'EdDSA';
  jwk: JWK;
  sign(header: Record<string, unknown>, payload: Record<string, unknown>): string;
}

/** DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2, note 1) */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * RSA with e = 1: s^e mod n = s, so the signature of a message is its EMSA-PKCS1-v1_5 encoding
 * (RFC 8017 §9.2) itself. `e` may be replaced (e.g. a huge exponent: the signature is then garbage).
 */
export function rsaExponentOneKey(e = 'AQ'): WeakKey {
  const { n } = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
  const k = Buffer.from(n!, 'base64url').length;
  return {
    alg: 'RS256',
    jwk: { kty: 'RSA', n, e },
    sign(header, payload) {
      const input = `${b64url(header)}.${b64url(payload)}`;
      const digest = Buffer.concat([SHA256_DIGEST_INFO, createHash('sha256').update(input).digest()]);
      const em = Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(k - digest.length - 3, 0xff), Buffer.from([0]), digest]);
      return `${input}.${em.toString('base64url')}`;
    },
  };
}

/**
 * Ed25519 with the identity point as public key A: [S]B = R + [k]A holds for R = identity, S = 0,
 * whatever the message (RFC 8032 §5.1.7 without a small-order check, as OpenSSL verifies).
 */
export function ed25519IdentityKey(): WeakKey {
  const identity = Buffer.alloc(32);
  identity[0] = 1;
  return {
    alg: 'EdDSA',
    jwk: { kty: 'OKP', crv: 'Ed25519', x: identity.toString('base64url') },
    sign(header, payload) {
      return `${b64url(header)}.${b64url(payload)}.${Buffer.concat([identity, Buffer.alloc(32)]).toString('base64url')}`;
    },
  };
}

/** RFC 7638 thumbprint computed here from the required members, independently of jose. */
export function rfc7638Thumbprint(jwk: JWK): string {
  const required: Record<string, string[]> = { EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'], RSA: ['e', 'kty', 'n'] };
  const members = required[jwk.kty!];
  if (!members) throw new Error(`no thumbprint members for kty ${jwk.kty}`);
  const canonical = `{${members.map((m) => `${JSON.stringify(m)}:${JSON.stringify((jwk as Record<string, unknown>)[m])}`).join(',')}}`;
  return createHash('sha256').update(canonical).digest('base64url');
}

export function decodePayload(jwt: string): Record<string, any> {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8'));
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  body: any;
}

export interface TokenCall {
  assertion?: string;
  proof?: string;
  /** form fields over the defaults (grant_type, client_assertion_type, client_assertion); undefined removes one */
  params?: Record<string, string | undefined>;
  headers?: Record<string, string>;
}

/** POST one raw token request: a form body of exactly these fields, a DPoP header when a proof is given. */
export async function postToken(endpoint: string, call: TokenCall): Promise<RawResponse> {
  const fields: Record<string, string | undefined> = {
    grant_type: 'client_credentials',
    client_assertion_type: call.assertion === undefined ? undefined : ASSERTION_TYPE,
    client_assertion: call.assertion,
    ...call.params,
  };
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) body.append(k, v);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', ...call.headers };
  if (call.proof !== undefined) headers.dpop = call.proof;
  const res = await fetch(endpoint, { method: 'POST', headers, body });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, text, body: parsed };
}

/** The response is an RFC 6749 §5.2 error: the status, a JSON object with `error` (one of `errors`), and no token. */
export function assertOAuthError(res: RawResponse, status: number | number[], errors: string | string[]): void {
  const statuses = Array.isArray(status) ? status : [status];
  const codes = Array.isArray(errors) ? errors : [errors];
  const what = `${res.status} ${res.text}`;
  assert.ok(statuses.includes(res.status), `expected status ${statuses.join('/')}, got ${what}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/, `error body must be JSON: ${what}`);
  assert.ok(res.body && typeof res.body === 'object' && !Array.isArray(res.body), `error body must be a JSON object: ${what}`);
  assert.ok(codes.includes(res.body.error), `expected error ${codes.join(' or ')}, got ${what}`);
  if (res.body.error_description !== undefined) assert.equal(typeof res.body.error_description, 'string');
  assert.equal(res.body.access_token, undefined, `no token may be issued: ${what}`);
  assert.equal(res.body.refresh_token, undefined, `no token may be issued: ${what}`);
}

/** The response carries an access token. */
export function assertIssued(res: RawResponse, tokenType: 'DPoP' | 'Bearer' = 'DPoP'): string {
  assert.equal(res.status, 200, `expected a token, got ${res.status} ${res.text}`);
  assert.equal(typeof res.body?.access_token, 'string', `expected a token, got ${res.text}`);
  assert.equal(res.body.token_type, tokenType);
  return res.body.access_token as string;
}

/** Every credential a test file sent or received, to be looked for in the server logs afterwards. */
export class SecretLedger {
  readonly #values = new Set<string>();

  add(...values: Array<string | undefined>): void {
    for (const v of values) if (v) this.#values.add(v);
  }

  /** also remembers the access token of a response */
  addResponse(res: RawResponse): RawResponse {
    if (typeof res.body?.access_token === 'string') this.add(res.body.access_token);
    if (typeof res.body?.refresh_token === 'string') this.add(res.body.refresh_token);
    return res;
  }

  get size(): number {
    return this.#values.size;
  }

  /** log lines that contain a whole credential or its signature segment */
  leaks(lines: readonly string[]): string[] {
    const needles: string[] = [];
    for (const v of this.#values) {
      needles.push(v);
      const sig = v.split('.')[2];
      if (sig && sig.length >= 16) needles.push(sig);
      const payload = v.split('.')[1];
      if (payload && payload.length >= 16) needles.push(payload);
    }
    const found: string[] = [];
    for (const line of lines) {
      const hit = needles.find((n) => line.includes(n));
      if (hit) found.push(`${line.slice(0, 300)}  <- contains ${hit.slice(0, 24)}…`);
    }
    return found;
  }
}

/**
 * Wait until a freshly started process answers GET /ready with 200, as a load balancer would before
 * sending it traffic. (A process logs "sigil listening" before its first Redis connection is up and
 * answers 503 until its next readiness probe: see the report of the security tests.)
 */
export async function untilReady(baseUrl: string, timeoutMs = 10_000): Promise<void> {
  await eventually(`${baseUrl}/ready to answer 200`, async () => {
    const status = await fetch(`${baseUrl}/ready`).then((r) => r.status, () => 0);
    if (status !== 200) throw new Error(`/ready answered ${status}`);
    return true;
  }, { timeout: timeoutMs, every: 50 });
}

/**
 * Fresh credentials of one client for raw token requests, each recorded in `ledger`: an assertion
 * with the longest life Sigil accepts (it stays presentable for a whole test, e.g. to be replayed
 * after a restart) and a DPoP proof for the token endpoint. `issuer` is read at each call (it is
 * known only once the servers run).
 */
export function credentialsOf(client: { key: SigningKeyPair; dpopKey: SigningKeyPair; clientId: string }, issuer: () => string, ledger: SecretLedger) {
  return {
    async assertion(): Promise<string> {
      const jwt = await forgeAssertion(client.key, client.clientId, issuer(), { claims: { exp: epoch() + 290 } });
      ledger.add(jwt);
      return jwt;
    },
    async proof(): Promise<string> {
      const jwt = await forgeProof(client.dpopKey, 'POST', `${issuer()}/token`);
      ledger.add(jwt);
      return jwt;
    },
  };
}
