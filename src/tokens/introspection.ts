// RFC 7662 introspection and RFC 7009 revocation of Sigil's JWT access tokens. oidc-provider answers
// both with unsupported_token_type for JWTs (after authenticating the client); Sigil answers instead.
import type { ClientRecord } from '../clients/client-store.js';
import { statusRefOf, type AccessTokenVerifier } from './access-tokens.js';
import { isAccessTokenRevoked, type RevocationList } from '../revocation/revocation-list.js';
import type { Revocations } from '../revocation/revocations.js';

// where they are now, for the callers that knew them here

export interface TokenDecisions {
  verify: AccessTokenVerifier;
  revocationList: RevocationList;
  revocations: Revocations;
  /** `${issuer}/status-lists/` */
  statusListPrefix: string;
}

/**
 * The introspection answer for a JWT access token. A client sees its own tokens; a client created
 * with --can-introspect (a gateway) sees any token; anyone else learns nothing ({active: false}).
 */
export async function introspectAccessToken(d: TokenDecisions, token: string, requester: Pick<ClientRecord, 'clientId' | 'canIntrospect'>): Promise<Record<string, unknown>> {
  const inactive = { active: false };
  const v = await d.verify(token);
  if (!v.ok) return inactive;
  const c = v.claims;
  if (c.client_id !== requester.clientId && !requester.canIntrospect) return inactive;
  if (isAccessTokenRevoked(d.revocationList, c)) return inactive;
  return {
    active: true,
    iss: c.iss,
    sub: c.sub,
    client_id: c.client_id,
    aud: c.aud,
    scope: c.scope,
    exp: c.exp,
    iat: c.iat,
    jti: c.jti,
    token_type: c.cnf?.jkt ? 'DPoP' : 'Bearer',
    ...(c.cnf ? { cnf: c.cnf } : {}),
    ...(c.act ? { act: c.act } : {}),
  };
}

/** RFC 7009 for a JWT access token: a client revokes its own tokens; anything else is a silent 200. */
export async function revokeOwnAccessToken(d: TokenDecisions, token: string, requesterId: string, requestId?: string): Promise<void> {
  const v = await d.verify(token);
  if (!v.ok || v.claims.client_id !== requesterId) return;
  const c = v.claims;
  await d.revocations.revokeToken(c.jti!, requesterId, requestId ? `RFC 7009 request ${requestId}` : 'RFC 7009', {
    clientId: c.client_id,
    expiresAt: c.exp!,
    status: statusRefOf(c, d.statusListPrefix),
  });
}
