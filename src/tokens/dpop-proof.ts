// RFC 9449 §4.3: checking a DPoP proof at the token endpoint (Sigil's grants). Resource servers,
// Sigil's own admin API among them, check proofs with sigil/verifier (src/verifier/dpop.ts). Each is
// checked against an outside implementation: this one against jose (dpop-proof-differential.test.ts),
// the verifier against oauth4webapi (test/verifier/differential.test.ts).
//
// It replaces oidc-provider's validateDpop on the token path for two reasons: Sigil checks `iat`
// always (oidc-provider skips it once a nonce is valid), and a service presents the same DPoP key on
// every request, so its imported key and RFC 7638 thumbprint are kept instead of being rebuilt each
// time. Signatures are checked with node:crypto, synchronously: cheaper than a WebCrypto job and
// its thread hop for a ~50 µs operation.
import { constants, createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { ed25519KeyProblem, jwkMembersProblem, p256KeyProblem, PRIVATE_MEMBERS, rsaKeyProblem } from '../clients/client-keys.js';
import { jsonTextProblem } from '../input/input-limits.js';

/** A proof that passed every check but the replay check (its jti), which needs shared storage. */
export interface VerifiedProof {
  jti: string;
  iat: number;
  /** RFC 7638 thumbprint of the proof key: the token's `cnf.jkt` */
  thumbprint: string;
  nonce?: string;
}

export interface ProofExpectations {
  /** the request's method: `htm` */
  method: string;
  /** the issuer-based URL of the endpoint, without query or fragment: `htu` */
  url: string;
  /** when a DPoP-bound access token comes with the proof: `ath` must be its SHA-256 */
  accessToken?: string;
  /** epoch seconds (tests) */
  now?: number;
}

/** Stateless server nonces (oidc-provider's ServerChallenge): shared secret, so every instance agrees. */
export interface ProofNonces {
  nextChallenge(): string;
  checkChallenge(nonce: string): boolean;
}

export class DpopProofError extends Error {
  /** the client should retry with the server nonce in `nonce` (error `use_dpop_nonce`) */
  readonly useNonce: boolean;
  readonly nonce: string | undefined;

  constructor(description: string, opts: { useNonce?: boolean; nonce?: string } = {}) {
    super(description);
    this.name = 'DpopProofError';
    this.useNonce = opts.useNonce ?? false;
    this.nonce = opts.nonce;
  }
}

/** a proof may be at most this old, nonce or not (RFC 9449 §11.1 leaves the window to the server) */
export const PROOF_MAX_AGE_SECONDS = 60;
/** and at most this far in the future (clock skew) */
export const PROOF_MAX_SKEW_SECONDS = 5;

const COMPACT_JWS = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/;
/** the members thumbprintInput() checks (constants or base64url): the key rule skips them on every proof */
const THUMBPRINT_MEMBERS: ReadonlySet<string> = new Set(['kty', 'crv', 'x', 'y', 'n', 'e']);
/** the header and payload of a real proof are a few hundred bytes */
const MAX_PROOF_LENGTH = 8192;

interface AlgSpec {
  kty: 'EC' | 'OKP' | 'RSA';
  crv?: string;
  verify(data: Buffer, key: KeyObject, signature: Buffer): boolean;
}

/** the algorithms a proof may use, and how each is checked; nothing else is accepted (no none, no HS*) */
const ALGORITHMS: Record<string, AlgSpec> = {
  ES256: { kty: 'EC', crv: 'P-256', verify: (d, key, s) => s.length === 64 && verify('sha256', d, { key, dsaEncoding: 'ieee-p1363' }, s) },
  EdDSA: { kty: 'OKP', crv: 'Ed25519', verify: (d, key, s) => s.length === 64 && verify(null, d, key, s) },
  PS256: { kty: 'RSA', verify: (d, key, s) => verify('sha256', d, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, s) },
  RS256: { kty: 'RSA', verify: (d, key, s) => verify('sha256', d, { key, padding: constants.RSA_PKCS1_PADDING }, s) },
};

interface ProofKey {
  key: KeyObject;
  thumbprint: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function decodeJson(segment: string, what: string): Record<string, unknown> {
  const text = Buffer.from(segment, 'base64url').toString('utf8');
  // a jti holding U+0000 would reach SQL (the replay record); deep nesting, recursive code
  const problem = jsonTextProblem(text);
  if (problem) throw new DpopProofError(`DPoP proof ${what} ${problem}`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new DpopProofError(`DPoP proof ${what} is not base64url-encoded JSON`);
  }
  if (!isObject(value)) throw new DpopProofError(`DPoP proof ${what} must be a JSON object`);
  return value;
}

/**
 * The RFC 7638 input of a public JWK: its required members, in lexicographic order, nothing else.
 * It identifies the key completely, so it is also the cache key.
 */
function thumbprintInput(jwk: Record<string, unknown>, spec: AlgSpec): string {
  const str = (name: string) => {
    const v = jwk[name];
    if (typeof v !== 'string' || !/^[A-Za-z0-9_-]+$/.test(v)) throw new DpopProofError(`DPoP proof jwk member ${name} is missing or malformed`);
    return v;
  };
  if (jwk.kty !== spec.kty) throw new DpopProofError('DPoP proof jwk does not match its alg');
  if (spec.kty === 'RSA') return JSON.stringify({ e: str('e'), kty: 'RSA', n: str('n') });
  if (jwk.crv !== spec.crv) throw new DpopProofError('DPoP proof jwk curve does not match its alg');
  if (spec.kty === 'EC') return JSON.stringify({ crv: spec.crv, kty: 'EC', x: str('x'), y: str('y') });
  return JSON.stringify({ crv: spec.crv, kty: 'OKP', x: str('x') });
}

function importProofKey(canonical: string, spec: AlgSpec): ProofKey {
  const members = JSON.parse(canonical) as Record<string, string>;
  // client-keys.ts's rule, before anything is verified: a weak key (RSA e = 1, a small-order
  // Ed25519 point) verifies forgeries, a huge RSA exponent makes the check itself the attack
  const weak = spec.kty === 'RSA' ? rsaKeyProblem(members.n, members.e) : spec.kty === 'OKP' ? ed25519KeyProblem(members.x) : p256KeyProblem(members.x, members.y);
  if (weak) throw new DpopProofError(`DPoP proof jwk ${weak}`);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: members, format: 'jwk' });
  } catch {
    throw new DpopProofError('DPoP proof jwk is not a valid public key');
  }
  return { key, thumbprint: createHash('sha256').update(canonical).digest('base64url') };
}

export class DpopProofVerifier {
  readonly #algorithms: ReadonlySet<string>;
  readonly #nonces: ProofNonces | undefined;
  readonly #maxKeys: number;
  /** proof keys seen in valid proofs, least recently used first */
  readonly #keys = new Map<string, ProofKey>();

  constructor(opts: { algorithms: readonly string[]; nonces?: ProofNonces; maxKeys?: number }) {
    for (const alg of opts.algorithms) if (!ALGORITHMS[alg]) throw new Error(`unsupported DPoP algorithm ${alg}`);
    this.#algorithms = new Set(opts.algorithms);
    this.#nonces = opts.nonces;
    this.#maxKeys = opts.maxKeys ?? 10_000;
  }

  /** whether proofs must carry a server nonce */
  get noncesRequired(): boolean {
    return this.#nonces !== undefined;
  }

  /** the nonce to announce in a `DPoP-Nonce` header, when nonces are on */
  nextNonce(): string | undefined {
    return this.#nonces?.nextChallenge();
  }

  /** Every check of RFC 9449 §4.3 except the jti replay check. Throws DpopProofError. */
  verify(proof: string, expected: ProofExpectations): VerifiedProof {
    const parts = proof.length <= MAX_PROOF_LENGTH ? COMPACT_JWS.exec(proof) : null;
    if (!parts) throw new DpopProofError('DPoP proof must be one compact JWS');
    const [, encodedHeader, encodedPayload, encodedSignature] = parts as unknown as [string, string, string, string];

    const header = decodeJson(encodedHeader, 'header');
    if (typeof header.typ !== 'string' || !/^(application\/)?dpop\+jwt$/i.test(header.typ)) throw new DpopProofError('DPoP proof typ must be dpop+jwt');
    const alg = header.alg;
    const spec = typeof alg === 'string' && this.#algorithms.has(alg) ? ALGORITHMS[alg] : undefined;
    if (!spec) throw new DpopProofError('DPoP proof alg is not allowed');
    // no extension is understood, so none may be critical (RFC 7515 §4.1.11)
    if (header.crit !== undefined) throw new DpopProofError('DPoP proof crit header is not supported');
    const jwk = header.jwk;
    if (!isObject(jwk)) throw new DpopProofError('DPoP proof must carry its public key in the jwk header');
    if (PRIVATE_MEMBERS.some((m) => m in jwk)) throw new DpopProofError('DPoP proof jwk must be a public key');
    if (jwk.alg !== undefined && jwk.alg !== alg) throw new DpopProofError('DPoP proof jwk alg does not match the header alg');
    if (jwk.use !== undefined && jwk.use !== 'sig') throw new DpopProofError('DPoP proof jwk use must be sig');
    const members = jwkMembersProblem(jwk, THUMBPRINT_MEMBERS);
    if (members) throw new DpopProofError(`DPoP proof jwk ${members}`);

    const canonical = thumbprintInput(jwk, spec);
    const known = this.#keys.get(canonical);
    const proofKey = known ?? importProofKey(canonical, spec);
    const signed = Buffer.from(`${encodedHeader}.${encodedPayload}`, 'ascii');
    if (!spec.verify(signed, proofKey.key, Buffer.from(encodedSignature, 'base64url'))) {
      throw new DpopProofError('DPoP proof signature is invalid');
    }
    this.#remember(canonical, proofKey, known !== undefined);

    const claims = decodeJson(encodedPayload, 'payload');
    const now = expected.now ?? Math.floor(Date.now() / 1000);
    const { jti, iat, htm, htu, nonce, exp, nbf } = claims;
    if (typeof jti !== 'string' || !jti) throw new DpopProofError('DPoP proof must have a jti string');
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new DpopProofError('DPoP proof must have a numeric iat');
    if (exp !== undefined && (typeof exp !== 'number' || exp <= now)) throw new DpopProofError('DPoP proof has expired');
    if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now)) throw new DpopProofError('DPoP proof is not yet valid');
    if (htm !== expected.method) throw new DpopProofError('DPoP proof htm mismatch');
    if (!sameEndpoint(htu, expected.url)) throw new DpopProofError('DPoP proof htu mismatch');
    if (expected.accessToken !== undefined && claims.ath !== createHash('sha256').update(expected.accessToken).digest('base64url')) {
      throw new DpopProofError('DPoP proof ath mismatch');
    }
    if (nonce !== undefined && typeof nonce !== 'string') throw new DpopProofError('DPoP proof nonce must be a string');
    if (this.#nonces) {
      if (!nonce) throw new DpopProofError('nonce is required in the DPoP proof', { useNonce: true, nonce: this.#nonces.nextChallenge() });
      if (!this.#nonces.checkChallenge(nonce)) throw new DpopProofError('invalid nonce in DPoP proof', { useNonce: true, nonce: this.#nonces.nextChallenge() });
    } else if (nonce !== undefined) {
      throw new DpopProofError('DPoP nonces are not in use');
    }
    // checked after the nonce: a valid nonce says the proof is recent, but a proof made long ago
    // for a still-valid nonce is refused all the same
    if (iat < now - PROOF_MAX_AGE_SECONDS) throw new DpopProofError('DPoP proof iat is too old');
    if (iat > now + PROOF_MAX_SKEW_SECONDS) throw new DpopProofError('DPoP proof iat is in the future');

    return { jti, iat, thumbprint: proofKey.thumbprint, ...(nonce ? { nonce } : {}) };
  }

  #remember(canonical: string, key: ProofKey, known: boolean): void {
    // a Map iterates in insertion order: re-inserting a key makes it the most recently used
    if (known) this.#keys.delete(canonical);
    else if (this.#keys.size >= this.#maxKeys) this.#keys.delete(this.#keys.keys().next().value!);
    this.#keys.set(canonical, key);
  }
}

/** `htu` names the endpoint: same URL once query and fragment are dropped (RFC 9449 §4.3 step 9). */
function sameEndpoint(htu: unknown, expected: string): boolean {
  if (typeof htu !== 'string') return false;
  // the common case, without parsing: exactly the expected URL
  if (htu === expected) return true;
  const url = URL.parse(htu);
  if (!url) return false;
  url.search = '';
  url.hash = '';
  return url.href === expected;
}
