// RFC 9449 §4.3: a DPoP proof presented with an access token at a protected resource. Everything but
// the replay check (the store does that, last) and the cnf.jkt comparison (the caller has the token).
// A service presents the same key on every request, so its imported key and RFC 7638 thumbprint are
// kept: the one unavoidable cost per request is the proof's signature check.
import { createHash, createHmac, createPublicKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { ALGORITHMS, hasType, isObject, parseJws, type AlgSpec } from './jws.js';

export class ProofProblem extends Error {
  constructor(message: string, readonly nonceProblem = false) {
    super(message);
  }
}

export interface CheckedProof {
  jti: string;
  iat: number;
  thumbprint: string;
}

const MAX_PROOF_LENGTH = 8192;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const B64URL = /^[A-Za-z0-9_-]+$/;
const ED25519_P = 2n ** 255n - 19n;
const ED25519_ORDER_8_Y = 2707385501144840649318225287225658788936804267575313519463743609750303402022n;
/** public keys of small order verify forged signatures */
const ED25519_SMALL_ORDER_Y = new Set([0n, 1n, ED25519_P - 1n, ED25519_ORDER_8_Y, ED25519_P - ED25519_ORDER_8_Y]);

interface ProofKey {
  key: KeyObject;
  thumbprint: string;
}

/** The RFC 7638 input of the proof's public JWK: its required members in order; also the cache key. */
function thumbprintInput(jwk: Record<string, unknown>, spec: AlgSpec): string {
  const str = (name: string) => {
    const v = jwk[name];
    if (typeof v !== 'string' || !B64URL.test(v)) throw new ProofProblem(`DPoP proof jwk member ${name} is missing or malformed`);
    return v;
  };
  if (jwk.kty !== spec.kty) throw new ProofProblem('DPoP proof jwk does not match its alg');
  if (spec.kty === 'RSA') return `{"e":${JSON.stringify(str('e'))},"kty":"RSA","n":${JSON.stringify(str('n'))}}`;
  if (jwk.crv !== spec.crv) throw new ProofProblem('DPoP proof jwk curve does not match its alg');
  if (spec.kty === 'EC') return `{"crv":"${spec.crv}","kty":"EC","x":"${str('x')}","y":"${str('y')}"}`;
  return `{"crv":"${spec.crv}","kty":"OKP","x":"${str('x')}"}`;
}

function weakKey(members: Record<string, string>, spec: AlgSpec): string | undefined {
  if (spec.kty === 'RSA') {
    if (members.e !== 'AQAB') return 'RSA exponent must be 65537';
    const n = Buffer.from(members.n!, 'base64url');
    if (n.length < 256 || n.length > 1024) return 'RSA modulus must be 2048 to 8192 bits';
  } else if (spec.kty === 'OKP') {
    const x = Buffer.from(members.x!, 'base64url');
    if (x.length !== 32) return 'Ed25519 key must be 32 bytes';
    const y = BigInt(`0x${Buffer.from(x).reverse().toString('hex')}`) & ((1n << 255n) - 1n);
    if (y >= ED25519_P || ED25519_SMALL_ORDER_Y.has(y)) return 'Ed25519 key is non-canonical or of small order';
  }
  return undefined;
}

/** RFC 9449 §4.3 step 9 with RFC 3986 §6.2.2/§6.2.3 normalisation: scheme and host case, default port, percent-encoding. */
export function normalizedEndpoint(url: string): string | undefined {
  const u = URL.parse(url);
  if (!u || (u.protocol !== 'https:' && u.protocol !== 'http:')) return undefined;
  const path = u.pathname.includes('%')
    ? u.pathname.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => {
        const c = String.fromCharCode(parseInt(hex, 16));
        return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${hex.toUpperCase()}`;
      })
    : u.pathname;
  return `${u.protocol}//${u.host}${path}`;
}

/** Stateless resource-server nonces (§9): an HMAC of the time window, so every replica agrees. */
export class ProofNonces {
  readonly #secret: Buffer;
  readonly #windowMs: number;
  readonly #now: () => number;

  constructor(secret: string | Uint8Array, lifetimeSeconds: number, now: () => number) {
    this.#secret = Buffer.from(secret);
    if (this.#secret.length < 16) throw new Error('the DPoP nonce secret must be at least 16 bytes');
    this.#windowMs = lifetimeSeconds * 1000;
    this.#now = now;
  }

  #make(window: number): string {
    const w = Buffer.alloc(6);
    w.writeUIntBE(window, 0, 6);
    return Buffer.concat([w, createHmac('sha256', this.#secret).update(w).digest().subarray(0, 16)]).toString('base64url');
  }

  next(): string {
    return this.#make(Math.floor(this.#now() / this.#windowMs));
  }

  /** the current window's nonce or the previous one's */
  valid(nonce: string): boolean {
    const bytes = Buffer.from(nonce, 'base64url');
    if (bytes.length !== 22) return false;
    const window = bytes.readUIntBE(0, 6);
    const current = Math.floor(this.#now() / this.#windowMs);
    if (window !== current && window !== current - 1) return false;
    return timingSafeEqual(Buffer.from(this.#make(window), 'base64url'), bytes);
  }
}

export interface ProofCheckOptions {
  algorithms: ReadonlySet<string>;
  maxAgeSeconds: number;
  skewSeconds: number;
  nonces: ProofNonces | undefined;
}

export class ProofChecker {
  readonly #keys = new Map<string, ProofKey>();
  readonly #maxKeys = 10_000;

  constructor(private readonly opts: ProofCheckOptions) {}

  /**
   * Checks `proof` for a request with `method` to `endpoint` (normalised, no query) carrying the
   * token whose SHA-256 is `ath`. Throws ProofProblem.
   */
  check(proof: string, method: string, endpoint: string, ath: string, nowMs: number): CheckedProof {
    const jws = parseJws(proof, MAX_PROOF_LENGTH);
    if (!jws) throw new ProofProblem('DPoP proof must be one compact JWS with a JSON header and payload');
    const { header, payload: claims } = jws;
    if (!hasType(header, 'dpop+jwt')) throw new ProofProblem('DPoP proof typ must be dpop+jwt');
    const alg = header.alg;
    const spec = typeof alg === 'string' && this.opts.algorithms.has(alg) ? ALGORITHMS[alg] : undefined;
    if (!spec) throw new ProofProblem('DPoP proof alg is not allowed');
    if (header.crit !== undefined) throw new ProofProblem('DPoP proof crit header is not supported');
    const jwk = header.jwk;
    if (!isObject(jwk)) throw new ProofProblem('DPoP proof must carry its public key in the jwk header');
    if (PRIVATE_MEMBERS.some((m) => m in jwk)) throw new ProofProblem('DPoP proof jwk must be a public key');

    const canonical = thumbprintInput(jwk, spec);
    let proofKey = this.#keys.get(canonical);
    if (!proofKey) {
      const members = JSON.parse(canonical) as Record<string, string>;
      const weak = weakKey(members, spec);
      if (weak) throw new ProofProblem(`DPoP proof jwk: ${weak}`);
      let key: KeyObject;
      try {
        key = createPublicKey({ key: members, format: 'jwk' });
      } catch {
        throw new ProofProblem('DPoP proof jwk is not a valid public key');
      }
      proofKey = { key, thumbprint: createHash('sha256').update(canonical).digest('base64url') };
    }
    if (!spec.verify(Buffer.from(jws.signingInput, 'ascii'), proofKey.key, jws.signature)) throw new ProofProblem('DPoP proof signature is invalid');
    // remembered only once it verified: junk keys never push a real client's key out
    if (this.#keys.size >= this.#maxKeys && !this.#keys.has(canonical)) this.#keys.delete(this.#keys.keys().next().value!);
    this.#keys.set(canonical, proofKey);

    const { jti, iat, htm, htu, nonce } = claims;
    if (typeof jti !== 'string' || !jti || jti.length > 256) throw new ProofProblem('DPoP proof must have a jti string');
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new ProofProblem('DPoP proof must have a numeric iat');
    if (htm !== method) throw new ProofProblem('DPoP proof htm does not match the request method');
    if (typeof htu !== 'string' || (htu !== endpoint && normalizedEndpoint(htu) !== endpoint)) throw new ProofProblem('DPoP proof htu does not match the request URL');
    if (claims.ath !== ath) throw new ProofProblem('DPoP proof ath does not match the access token');
    const now = Math.floor(nowMs / 1000);
    if (this.opts.nonces) {
      if (typeof nonce !== 'string' || !nonce) throw new ProofProblem('a nonce is required in the DPoP proof', true);
      if (!this.opts.nonces.valid(nonce)) throw new ProofProblem('the DPoP proof nonce is invalid or expired', true);
    }
    // checked even with a valid nonce: a proof made long ago for a still-valid nonce is refused
    if (iat < now - this.opts.maxAgeSeconds) throw new ProofProblem('DPoP proof iat is too old');
    if (iat > now + this.opts.skewSeconds) throw new ProofProblem('DPoP proof iat is in the future');
    return { jti, iat, thumbprint: proofKey.thumbprint };
  }
}
