// RFC 7662 introspection and RFC 7009 revocation of Sigil's JWT access tokens. oidc-provider answers
// both with unsupported_token_type for JWTs (after authenticating the client); Sigil answers instead.
import type { ClientRecord } from '../clients/client-store.js';
import type { AccessTokenClaims, AccessTokenVerifier } from './access-tokens.js';
import type { RevocationList } from '../revocation/revocation-list.js';
import type { Revocations } from '../revocation/revocations.js';
import type { StatusRef } from '../revocation/status-list.js';
import { chainClientsOf } from './delegation-chain.js';

export interface TokenDecisions {
  verify: AccessTokenVerifier;
  revocationList: RevocationList;
  revocations: Revocations;
  /** `${issuer}/status-lists/` */
  statusListPrefix: string;
}

/**
 * Refused for any reason: the token itself revoked, or any client in its chain revoked — the holder
 * (client_id), the subject (for tokens that began with client_credentials, sub is a client), and
 * every actor that exchanged it on the way (act.sub, nested). A chain that cannot be read whole
 * (deeper than the walk) is refused too: a revoked actor must not hide below the walk's end.
 */
export function isAccessTokenRevoked(list: Pick<RevocationList, 'isTokenRevoked' | 'isClientRevoked'>, claims: AccessTokenClaims): boolean {
  if (typeof claims.jti === 'string' && list.isTokenRevoked(claims.jti)) return true;
  const clients = chainClientsOf(claims);
  return !clients || clients.some((c) => list.isClientRevoked(c));
}

export function statusRefOf(claims: AccessTokenClaims, prefix: string): StatusRef | undefined {
  const sl = claims.status?.status_list;
  if (!sl || typeof sl.uri !== 'string' || typeof sl.idx !== 'number' || !sl.uri.startsWith(prefix)) return undefined;
  return { listId: sl.uri.slice(prefix.length), idx: sl.idx };
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
