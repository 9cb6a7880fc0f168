// How a protected API of Sigil's own (the admin API) checks a request: a DPoP-bound JWT access token
// signed by Sigil, for this audience, and a fresh, unreplayed DPoP proof made with the bound key.
import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify, type JWK, type JWTPayload } from 'jose';
import type { ReplayGuard } from '../storage/replay-guard.js';
import type { AccessTokenClaims, AccessTokenVerifier } from './access-tokens.js';
import { CLIENT_SIGNING_ALGS } from './client-keys.js';
import { PROOF_MAX_AGE_SECONDS, PROOF_MAX_SKEW_SECONDS } from './token-policy.js';

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

export function createResourceServer(opts: { audience: string; verify: AccessTokenVerifier; isRevoked: (claims: AccessTokenClaims) => boolean; replay: ReplayGuard }) {
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
    let proof: JWTPayload;
    let proofJwk: JWK;
    try {
      const verified = await jwtVerify(req.dpop, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [...CLIENT_SIGNING_ALGS] });
      proof = verified.payload;
      proofJwk = verified.protectedHeader.jwk as JWK;
    } catch {
      throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof is not a valid signed dpop+jwt');
    }
    const now = Math.floor(Date.now() / 1000);
    if (typeof proof.iat !== 'number' || proof.iat < now - PROOF_MAX_AGE_SECONDS || proof.iat > now + PROOF_MAX_SKEW_SECONDS) {
      throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof iat is not recent');
    }
    if (typeof proof.jti !== 'string' || !proof.jti) throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof has no jti');
    if (proof.htm !== req.method) throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof htm does not match');
    const htu = typeof proof.htu === 'string' ? URL.parse(proof.htu) : null;
    if (htu) {
      htu.search = '';
      htu.hash = '';
    }
    if (!htu || htu.href !== req.url) throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof htu does not match');
    if (proof.ath !== createHash('sha256').update(token).digest('base64url')) {
      throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof ath does not match the access token');
    }
    if ((await calculateJwkThumbprint(proofJwk)) !== jkt) {
      throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof was not made with the key the token is bound to');
    }
    if (!(await opts.replay.claim(`rs:${claims.client_id}:${proof.jti}`, PROOF_MAX_AGE_SECONDS + PROOF_MAX_SKEW_SECONDS))) {
      throw new RequestAuthError(401, 'invalid_dpop_proof', 'the DPoP proof was already used');
    }
    return claims;
  };
}
