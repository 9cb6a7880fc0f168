// The refresh_token grant for Sigil's rotating refresh tokens: DPoP-bound to the key they were
// issued to (also for confidential clients), one use each, reuse revokes the family.
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { buildTokenResponse } from 'oidc-provider/lib/helpers/grants.js';
import type { ClientStore } from '../../clients/client-store.js';
import { looksLikeRefreshToken } from '../refresh-token-store.js';
import type { RefreshTokens } from '../refresh-tokens.js';
import { grantedScope } from '../token-policy.js';
import { bindToProofKey, pendingClaims, tokenRequestProof, type AccessTokenSettings, type IssuedToken, type ProofCheck } from './shared.js';

export const REFRESH_TOKEN = 'refresh_token';
export const parameters = ['refresh_token', 'scope'];

export interface RefreshDeps {
  clients: ClientStore;
  settings: AccessTokenSettings;
  proofs: ProofCheck;
  refreshTokens: RefreshTokens;
  onIssued: (ctx: KoaContextWithOIDC, token: IssuedToken) => void;
}

export function refreshTokenGrant(provider: Provider, deps: RefreshDeps) {
  return async function refreshToken(ctx: KoaContextWithOIDC): Promise<void> {
    const client = ctx.oidc.client!;
    const params = ctx.oidc.params as Record<string, unknown>;
    const caller = await deps.clients.find(client.clientId);
    if (!caller || caller.status !== 'active') throw new errors.InvalidClient('client is not active');

    const dPoP = tokenRequestProof(ctx, deps.proofs);
    if (!dPoP) throw new errors.InvalidDpopProof('a DPoP proof made with the bound key is required to use a refresh token');

    const presented = params.refresh_token;
    const record = looksLikeRefreshToken(presented) ? await deps.refreshTokens.find(presented) : undefined;
    if (!record || record.clientId !== caller.clientId) throw new errors.InvalidGrant('refresh token is invalid');
    if (dPoP.thumbprint !== record.jkt) throw new errors.InvalidGrant('refresh token is bound to another DPoP key');
    if (record.consumed) {
      await deps.refreshTokens.reused(record, caller.clientId);
      throw new errors.InvalidGrant('refresh token was already used; its family has been revoked');
    }
    const dead = deps.refreshTokens.deadReason(record);
    if (dead) throw new errors.InvalidGrant(dead);

    const scope = grantedScope(params.scope, record.scope ? record.scope.split(' ') : []).join(' ') || undefined;
    await bindToProofKey(provider, ctx, dPoP, { setThumbprint() {} });

    // a refreshed access token never outlives its family (which never outlives its subject token)
    const now = Math.floor(Date.now() / 1000);
    const expiresAt = Math.min(now + deps.settings.ttlSeconds, record.familyExpiresAt);
    if (expiresAt <= now) throw new errors.InvalidGrant('the refresh token family has expired');
    const ttl = expiresAt - now;

    const token = new provider.AccessToken({ accountId: record.subject, client, scope, gty: 'refresh_token', grantId: record.familyId });
    token.resourceServer = new provider.ResourceServer(record.audience, {
      audience: record.audience, scope: scope ?? '', accessTokenFormat: 'jwt', accessTokenTTL: ttl, jwt: { sign: { alg: deps.settings.alg, kid: deps.settings.kid } },
    });
    token.setThumbprint('jkt', record.jkt);
    // an absolute exp, fixed before the locks are waited for: within the family's life
    token.exp = expiresAt;
    if (record.act) pendingClaims.set(token, { act: record.act });
    ctx.oidc.entity('AccessToken', token);
    // signed first, so no connection is held while it signs; it leaves only if the rotation commits
    const value = await token.save();
    const issued: IssuedToken = { jti: token.jti!, clientId: client.clientId, expiresAt, grantType: REFRESH_TOKEN, extra: token.extra };
    const rotated = await deps.refreshTokens.rotate(record, issued);
    if (rotated === 'reused') {
      await deps.refreshTokens.reused(record, caller.clientId);
      throw new errors.InvalidGrant('refresh token was already used; its family has been revoked');
    }
    if ('dead' in rotated) throw new errors.InvalidGrant(rotated.dead);
    // recorded only once committed: a refused rotation issued nothing
    deps.onIssued(ctx, issued);

    const expiresIn = Math.max(0, expiresAt - Math.floor(Date.now() / 1000));
    ctx.body = buildTokenResponse(provider, { accessToken: value, expiresIn, scope, tokenType: token.tokenType, refreshToken: rotated.refreshToken });
  };
}
