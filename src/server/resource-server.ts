// How a protected API of Sigil's own (the admin API) checks a request: with sigil/verifier, the same
// checks a customer's API or the forward-auth service makes (one implementation, not two), fed from
// this process instead of over HTTP: the key ring's current public JWKS, the revocation list in place
// of the status list, and the server's replay guard for the proofs' jti (so a loss of Redis's replay
// records is noticed here as on the token endpoint).
import type { JWK } from 'jose';
import type { ReplayGuard } from '../storage/replay-guard.js';
import { createVerifier, type AccessTokenClaims, type RequestLike, type Verifier } from '../verifier/verifier.js';
import { refusal, VerifierError, type Challenge, type VerifierErrorCode } from '../verifier/errors.js';
import type { ClaimResult, ReplayStore } from '../verifier/replay.js';
import { SUPPORTED_ALGORITHMS } from '../verifier/jws.js';

export type { AccessTokenClaims, RequestLike };
export { VerifierError };

/** namespace of the admin API's proof records in the replay store, apart from assertions and token-endpoint proofs */
const RECORD_PREFIX = 'rs:';

/**
 * The server's replay guard as the verifier's replay store. A proof is filed under its key's
 * thumbprint (the guard shards by it): the thumbprint is the token's cnf.jkt, so one client's proofs
 * stay together. A proof dated before a detected loss of records may have been used: refused as a
 * replay. A store outage (or the few seconds of quarantine after a loss) throws, which the verifier
 * turns into `temporarily_unavailable`.
 */
export function guardAsReplayStore(guard: ReplayGuard): ReplayStore {
  return {
    async claim(key: string, ttlMs: number, iat: number): Promise<ClaimResult> {
      const thumbprint = key.slice(0, key.indexOf(':'));
      const verdict = await guard.claim(thumbprint, { id: `${RECORD_PREFIX}${key}`, iat: () => iat }, Math.ceil(ttlMs / 1000));
      return verdict === 'free' ? 'fresh' : 'replayed';
    },
    // the guard belongs to the server's storage, closed with it
  };
}

export interface ResourceServer {
  verify: Verifier;
  /** a refusal of the gate's own (the token's client is not an admin) in the verifier's words */
  refuse(code: Exclude<VerifierErrorCode, 'use_dpop_nonce'>, description: string): VerifierError;
}

export function createResourceServer(opts: {
  issuer: string;
  audience: string;
  /** scopes every request needs */
  scopes: readonly string[];
  /** algorithms of the issuer's access tokens */
  tokenAlgorithms: readonly string[];
  /** algorithms of the DPoP proofs (the issuer's dpop_signing_alg_values_supported) */
  proofAlgorithms: readonly string[];
  /** the issuer's current public JWKS: a new array when the keys change */
  publicJwks: () => JWK[];
  /** the token, or a client of its act chain, is revoked */
  isRevoked: (claims: AccessTokenClaims) => boolean;
  replay: ReplayGuard;
}): ResourceServer {
  const verify = createVerifier({
    issuer: opts.issuer,
    audience: opts.audience,
    scopes: opts.scopes,
    algorithms: opts.tokenAlgorithms,
    keys: opts.publicJwks,
    // the admin API hands out no nonces
    dpop: { algorithms: opts.proofAlgorithms, replayStore: guardAsReplayStore(opts.replay) },
    status: { revoked: opts.isRevoked, events: false },
    // nothing is ever fetched: a fetch would be a wiring mistake, not a network problem
    fetch: () => Promise.reject(new Error('the admin API verifier fetches nothing')),
  });
  const challenge: Challenge = { algs: opts.proofAlgorithms.filter((a) => SUPPORTED_ALGORITHMS.includes(a)), bearer: false };
  return { verify, refuse: (code, description) => refusal(challenge, code, description) };
}
