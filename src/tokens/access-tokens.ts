// Reading Sigil's own JWT access tokens back: signature by Sigil's keys, issuer, type. Used by
// introspection and RFC 7009 revocation (resource servers, the admin API among them, use sigil/verifier).
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JWK, type JWTPayload } from 'jose';
import type { StatusRef } from '../revocation/status-list-store.js';

/** the longest an access token may live (ACCESS_TOKEN_TTL's ceiling): what a revoked jti is kept for when its expiry is unknown */
export const MAX_ACCESS_TOKEN_TTL_SECONDS = 3600;

export interface AccessTokenClaims extends JWTPayload {
  client_id: string;
  scope?: string;
  cnf?: { jkt?: string; 'x5t#S256'?: string };
  act?: Record<string, unknown>;
  status?: { status_list?: { idx?: number; uri?: string } };
}

/** The token's entry in one of this issuer's status lists (`prefix`: `${issuer}/status-lists/`), if it names one. */
export function statusRefOf(claims: AccessTokenClaims, prefix: string): StatusRef | undefined {
  const sl = claims.status?.status_list;
  if (!sl || typeof sl.uri !== 'string' || typeof sl.idx !== 'number' || !sl.uri.startsWith(prefix)) return undefined;
  return { listId: sl.uri.slice(prefix.length), idx: sl.idx };
}

export type VerifyResult =
  | { ok: true; claims: AccessTokenClaims }
  | { ok: false; reason: 'expired' | 'invalid'; claims?: AccessTokenClaims };

export function accessTokenVerifier(opts: { issuer: string; publicJwks: () => JWK[]; algorithms: string[] }) {
  let source: JWK[] | undefined;
  let keySet: ReturnType<typeof createLocalJWKSet> | undefined;
  const keys = () => {
    const current = opts.publicJwks();
    if (current !== source) {
      source = current;
      keySet = createLocalJWKSet({ keys: current });
    }
    return keySet!;
  };

  return async function verifyAccessToken(token: string, audience?: string): Promise<VerifyResult> {
    try {
      const { payload } = await jwtVerify(token, keys(), {
        issuer: opts.issuer,
        typ: 'at+jwt',
        algorithms: opts.algorithms,
        requiredClaims: ['exp', 'iat', 'jti', 'client_id', 'sub', 'aud'],
        ...(audience ? { audience } : {}),
      });
      return { ok: true, claims: payload as AccessTokenClaims };
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return { ok: false, reason: 'expired', claims: err.payload as AccessTokenClaims };
      return { ok: false, reason: 'invalid' };
    }
  };
}

export type AccessTokenVerifier = ReturnType<typeof accessTokenVerifier>;
