// Steps every Sigil grant shares.
import { InvalidDpopProof, InvalidRequest, UseDpopNonce } from '../../oidc/refusals.js';
import type { TokenBinding } from '../../workload/types.js';
import type { TokenRequest } from '../../oidc/token-endpoint.js';
import { DpopProofError, type DpopProofVerifier, type VerifiedProof } from '../dpop-proof.js';

export interface IssuedToken {
  jti: string;
  clientId: string;
  /** epoch seconds */
  expiresAt: number;
  grantType: string;
  /** the token's extra claims (status list reference, act) */
  extra?: Record<string, unknown>;
}

/** How a grant checks the request's DPoP proof. */
export interface ProofCheck {
  verifier: DpopProofVerifier;
  /** the issuer-based token endpoint URL every proof's htu must name */
  tokenEndpoint: string;
}

/**
 * The request's DPoP proof, checked (undefined when the request has none): every check but the
 * jti's, which the request's confirm() makes. Refusals are invalid_dpop_proof, or use_dpop_nonce
 * with a DPoP-Nonce header to retry with.
 */
export function tokenRequestProof(request: TokenRequest, check: ProofCheck): VerifiedProof | undefined {
  const header = request.dpop;
  if (header === undefined) return undefined;
  try {
    // two DPoP headers arrive joined by a comma, which no compact JWS contains: refused as malformed
    const proof = check.verifier.verify(header, { method: request.method, url: check.tokenEndpoint });
    const next = check.verifier.nextNonce();
    if (next && proof.nonce !== next) request.setHeader('DPoP-Nonce', next);
    return proof;
  } catch (err) {
    if (!(err instanceof DpopProofError)) throw err;
    if (err.useNonce && err.nonce) {
      request.setHeader('DPoP-Nonce', err.nonce);
      throw new UseDpopNonce(err.message);
    }
    throw new InvalidDpopProof(err.message);
  }
}

/** A client registered with DPoP required (the default) gets no token without a proof. */
export function requireProofIf(required: boolean, proof: VerifiedProof | undefined): void {
  if (required && !proof) throw new InvalidDpopProof('DPoP proof JWT not provided');
}

/** What a grant binds its tokens to: the request's DPoP proof (its key), or the client certificate. */
export interface Binding {
  /** the checked DPoP proof (undefined for certificate-bound clients, and for DPoP-optional ones without a proof) */
  dPoP: VerifiedProof | undefined;
  /** cnf.x5t#S256: the certificate's thumbprint, for clients with token_binding mtls */
  x5t: string | undefined;
}

/**
 * The binding of the tokens issued on this request. A client with token_binding `mtls` (RFC 8705 §3)
 * gets certificate-bound tokens: it must present a client certificate (refused as invalid_request
 * otherwise: the request lacks something it needs, the client itself authenticated), and sends no
 * DPoP proof (a token is bound to one thing; a proof would be silently unused). Others: DPoP as before.
 */
export function requestBinding(request: TokenRequest, client: { tokenBinding: TokenBinding; dpopRequired: boolean }, check: ProofCheck): Binding {
  if (client.tokenBinding === 'mtls') {
    if (request.dpop !== undefined) throw new InvalidRequest('this client\'s tokens are bound to its client certificate (RFC 8705): send no DPoP proof');
    if (!request.certificate) throw new InvalidRequest('a client certificate is required: this client\'s tokens are bound to it (RFC 8705 §3)');
    return { dPoP: undefined, x5t: request.certificate.thumbprint };
  }
  const dPoP = tokenRequestProof(request, check);
  requireProofIf(client.dpopRequired, dPoP);
  return { dPoP, x5t: undefined };
}
