// The refresh_token grant for Sigil's rotating refresh tokens: DPoP-bound to the key they were
// issued to (also for confidential clients) or, for token_binding mtls clients, to the client
// certificate (RFC 8705 §3); one use each, reuse revokes the family.
import type { ClientStore } from '../../clients/client-store.js';
import { InvalidClient, InvalidDpopProof, InvalidGrant } from '../../oidc/refusals.js';
import type { SigilGrant } from '../../oidc/token-endpoint.js';
import { looksLikeRefreshToken } from '../refresh-token-store.js';
import type { RefreshTokens } from '../refresh-tokens.js';
import { grantedScope } from '../token-policy.js';
import { requestBinding, tokenRequestProof, type IssuedToken, type ProofCheck } from './shared.js';

import { REFRESH_TOKEN } from '../grant-types.js';
export const parameters = ['refresh_token', 'scope'];

export interface RefreshDeps {
  clients: ClientStore;
  accessTokenTtl: number;
  proofs: ProofCheck;
  refreshTokens: RefreshTokens;
}

export function refreshTokenGrant(deps: RefreshDeps): SigilGrant {
  return async function refreshToken(request) {
    const { params } = request;
    const caller = await deps.clients.find(request.clientId);
    if (!caller || caller.status !== 'active') throw new InvalidClient('client is not active');

    // a certificate-bound client (token_binding mtls) proves possession with its certificate, others with DPoP
    const { dPoP, x5t } = caller.tokenBinding === 'mtls' ? requestBinding(request, caller, deps.proofs) : { dPoP: tokenRequestProof(request, deps.proofs), x5t: undefined };
    if (x5t === undefined && !dPoP) throw new InvalidDpopProof('a DPoP proof made with the bound key is required to use a refresh token');

    const presented = params.refresh_token;
    const record = looksLikeRefreshToken(presented) ? await deps.refreshTokens.find(presented) : undefined;
    if (!record || record.clientId !== caller.clientId) throw new InvalidGrant('refresh token is invalid');
    if (x5t !== undefined ? record.x5tS256 !== x5t : record.jkt !== dPoP!.thumbprint) {
      throw new InvalidGrant(x5t !== undefined ? 'refresh token is bound to another client certificate' : 'refresh token is bound to another DPoP key');
    }
    if (record.consumed) {
      await deps.refreshTokens.reused(record, caller.clientId);
      throw new InvalidGrant('refresh token was already used; its family has been revoked');
    }
    const dead = deps.refreshTokens.deadReason(record);
    if (dead) throw new InvalidGrant(dead);

    const scope = grantedScope(params.scope, record.scope ? record.scope.split(' ') : []).join(' ') || undefined;
    // replay answer (the assertion's was given during client authentication): a replayed proof is a bad proof
    await request.confirm(dPoP);

    // a refreshed access token never outlives its family (which never outlives its subject token)
    const now = Math.floor(Date.now() / 1000);
    const expiresAt = Math.min(now + deps.accessTokenTtl, record.familyExpiresAt);
    if (expiresAt <= now) throw new InvalidGrant('the refresh token family has expired');

    // signed first, so no connection is held while it signs; it leaves only if the rotation commits
    const token = await request.sign({
      subject: { sub: record.subject, grantId: record.familyId, gty: 'refresh_token' },
      audience: record.audience, scope, ttlSeconds: expiresAt - now, expiresAt, ...(record.jkt !== null ? { jkt: record.jkt } : { x5t: record.x5tS256! }),
      ...(record.act ? { act: record.act } : {}),
    });
    const issued: IssuedToken = { jti: token.jti, clientId: request.clientId, expiresAt, grantType: REFRESH_TOKEN, extra: token.extra };
    const rotated = await deps.refreshTokens.rotate(record, issued);
    if (rotated === 'reused') {
      await deps.refreshTokens.reused(record, caller.clientId);
      throw new InvalidGrant('refresh token was already used; its family has been revoked');
    }
    if ('dead' in rotated) throw new InvalidGrant(rotated.dead);
    // recorded (by the oidc layer, once this returns) only when committed: a refused rotation issued nothing

    const expiresIn = Math.max(0, expiresAt - Math.floor(Date.now() / 1000));
    return { issued, answer: { accessToken: token.value, expiresIn, scope, tokenType: token.tokenType, refreshToken: rotated.refreshToken } };
  };
}
