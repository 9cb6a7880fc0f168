// The refusals Sigil's grants and policies throw. They are oidc-provider's error classes because
// oidc-provider renders them (status, RFC 6749 §5.2 body, WWW-Authenticate, the grant.error event);
// domain code names them through this module only, so an upgrade that renames one breaks here.
import { errors } from 'oidc-provider';

export const {
  InvalidClient, InvalidClientAuth, InvalidDpopProof, InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget, UseDpopNonce,
} = errors;

/** Every refusal oidc-provider renders (RFC 6749 §5.2): status, error code, description, and the real reason (error_detail). */
export const OAuthError = errors.OIDCProviderError;
export type OAuthError = errors.OIDCProviderError;
