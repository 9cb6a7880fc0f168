// How a protected API of Sigil's own (the admin API) checks a request: a DPoP-bound JWT access token
// signed by Sigil, for this audience, and a fresh, unreplayed DPoP proof made with the bound key.
import type { ReplayGuard } from '../storage/replay-guard.js';
import type { AccessTokenClaims, AccessTokenVerifier } from '../tokens/access-tokens.js';
import { DpopProofError, PROOF_MAX_AGE_SECONDS, PROOF_MAX_SKEW_SECONDS, type DpopProofVerifier, type VerifiedProof } from '../tokens/dpop-proof.js';

export class RequestAuthError extends Error {
  constructor(readonly status: 401 | 403, readonly error: 'invalid_token' | 'invalid_dpop_proof' | 'insufficient_scope', description: string) {
    super(description);
  }
}

export type { AccessTokenClaims };

export interface DpopRequest {
  method: string;
  /** the issuer-based URL of the resource, without query or fragment */
  url: string;
  authorization: string | undefined;
  dpop: string | undefined;
}

export function createResourceServer(opts: {
  audience: string; verify: AccessTokenVerifier; isRevoked: (claims: AccessTokenClaims) => boolean; replay: ReplayGuard; proofs: DpopProofVerifier;
}) {
  return async function authenticate(req: DpopRequest): Promise<AccessTokenClaims> {
    const match = /^DPoP ([A-Za-z0-9._~+/-]+=*)$/.exec(req.authorization ?? '');
    if (!match) throw new RequestAuthError(401, 'invalid_token', 'a DPoP-bound access token is required (Authorization: DPoP <token>)');
    const token = match[1]!;

    const verified = await opts.verify(token, opts.audience);
    if (!verified.ok) {
      throw new RequestAuthError(401, 'invalid_token', verified.reason === 'expired' ? 'the access token has expired' : 'the access token is not valid here');
    }
    const { claims } = verified;
    if (opts.isRevoked(claims)) throw new RequestAuthError(401, 'invalid_token', 'the access token has been revoked');
    const jkt = claims.cnf?.jkt;
    if (!jkt) throw new RequestAuthError(401, 'invalid_token', 'the access token is not DPoP-bound');

    if (!req.dpop || req.dpop.includes(',')) throw new RequestAuthError(401, 'invalid_dpop_proof', 'exactly one DPoP proof is required');
    let proof: VerifiedProof;
    try {
      proof = opts.proofs.verify(req.dpop, { method: req.method, url: req.url, accessToken: token });
    } catch (err) {
      if (!(err instanceof DpopProofError)) throw err;
      throw new RequestAuthError(401, 'invalid_dpop_proof', err.message);
    }
    if (proof.thumbprint !== jkt) {
      throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof was not made with the key the token is bound to');
    }
    // after the answer: the claim may be what reveals that Redis lost its replay records
    const verdict = await opts.replay.claim(claims.client_id, { id: `rs:${claims.client_id}:${proof.jti}`, iat: () => proof.iat }, PROOF_MAX_AGE_SECONDS + PROOF_MAX_SKEW_SECONDS);
    if (verdict === 'replayed') throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof was already used');
    if (verdict === 'predates-loss') throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof was issued before the server lost its replay records; make a new one');
    return claims;
  };
}
