// RFC 8693 token exchange: a service trades the token it received for a narrower one for the next
// hop. The new token keeps the subject's `sub`, records the caller in `act` (nested per hop), is
// bound to the caller's DPoP key, and never outlives the subject token.
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { buildTokenResponse } from 'oidc-provider/lib/helpers/grants.js';
import type { ClientStore } from '../../storage/client-store.js';
import type { AccessTokenClaims, AccessTokenVerifier } from '../access-tokens.js';
import { isAccessTokenRevoked } from '../introspection.js';
import { MAX_DELEGATION_DEPTH } from '../input-limits.js';
import type { RevocationList } from '../revocation-list.js';
import type { RefreshTokens } from '../refresh-tokens.js';
import { grantedScope, resolveAudience } from '../token-policy.js';
import { bindToProofKey, pendingClaims, requireProofIf, tokenRequestProof, type AccessTokenSettings, type IssuedToken, type ProofCheck } from './shared.js';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const SUBJECT_TYPES = [ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE];

export const parameters = [
  'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'audience', 'resource', 'scope',
];

export interface TokenExchangeDeps {
  clients: ClientStore;
  settings: AccessTokenSettings;
  proofs: ProofCheck;
  verify: AccessTokenVerifier;
  revocationList: RevocationList;
  refreshTokens: RefreshTokens;
  onIssued: (ctx: KoaContextWithOIDC, token: IssuedToken) => void;
}

function delegationDepth(act: unknown): number {
  let depth = 0;
  for (let a = act as { act?: unknown } | undefined; a && typeof a === 'object'; a = a.act as typeof a) depth++;
  return depth;
}

const audiencesOf = (c: AccessTokenClaims) => (Array.isArray(c.aud) ? c.aud : c.aud ? [c.aud] : []);

export function tokenExchangeGrant(provider: Provider, deps: TokenExchangeDeps) {
  /** A token Sigil issued, unexpired, not revoked, from a client that is not revoked. */
  async function sigilToken(token: unknown, what: string): Promise<AccessTokenClaims> {
    if (typeof token !== 'string' || !token) throw new errors.InvalidRequest(`${what} is required`);
    const v = await deps.verify(token);
    if (!v.ok) throw new errors.InvalidRequest(`${what} is not a valid, unexpired access token issued by this server`);
    if (isAccessTokenRevoked(deps.revocationList, v.claims)) throw new errors.InvalidRequest(`${what} has been revoked`);
    return v.claims;
  }

  return async function tokenExchange(ctx: KoaContextWithOIDC): Promise<void> {
    const client = ctx.oidc.client!;
    const params = ctx.oidc.params as Record<string, unknown>;
    const caller = await deps.clients.find(client.clientId);
    if (!caller || caller.status !== 'active') throw new errors.InvalidClient('client is not active');

    const dPoP = tokenRequestProof(ctx, deps.proofs);
    requireProofIf(caller.dpopRequired, dPoP);

    if (!SUBJECT_TYPES.includes(params.subject_token_type as string)) {
      throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE} or ${JWT_TOKEN_TYPE}`);
    }
    if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`only ${ACCESS_TOKEN_TYPE} can be requested`);
    }
    const subject = await sigilToken(params.subject_token, 'subject_token');
    if (!audiencesOf(subject).some((aud) => caller.serves.includes(aud))) {
      throw new errors.InvalidRequest('subject_token is not addressed to an API this client serves');
    }
    if (params.actor_token !== undefined) {
      if (!SUBJECT_TYPES.includes(params.actor_token_type as string)) throw new errors.InvalidRequest('actor_token_type is missing or unsupported');
      const actor = await sigilToken(params.actor_token, 'actor_token');
      if (actor.sub !== caller.clientId) throw new errors.InvalidRequest('actor_token must be a token of the calling client');
    } else if (params.actor_token_type !== undefined) {
      throw new errors.InvalidRequest('actor_token_type given without actor_token');
    }

    if (params.audience !== undefined && params.resource !== undefined && params.audience !== params.resource) {
      throw new errors.InvalidTarget('give the target as audience or resource, not both');
    }
    const audience = resolveAudience(params.audience ?? params.resource, caller);
    const subjectScope = subject.scope ? subject.scope.split(' ') : [];
    const allowed = subjectScope.filter((s) => caller.scope.includes(s));
    const scope = grantedScope(params.scope, allowed).join(' ') || undefined;

    const now = Math.floor(Date.now() / 1000);
    const ttl = Math.min(deps.settings.ttlSeconds, subject.exp! - now);
    if (ttl <= 0) throw new errors.InvalidRequest('subject_token has expired');
    const act = { sub: caller.clientId, ...(subject.act ? { act: subject.act } : {}) };
    // a longer chain would make a token no one could present again (see MAX_JSON_DEPTH)
    if (delegationDepth(act) > MAX_DELEGATION_DEPTH) throw new errors.InvalidRequest(`a token may record at most ${MAX_DELEGATION_DEPTH} delegations (act)`);

    const token = new provider.AccessToken({ accountId: subject.sub!, client, scope, gty: 'token_exchange', grantId: subject.jti! });
    token.resourceServer = new provider.ResourceServer(audience, {
      audience, scope: scope ?? '', accessTokenFormat: 'jwt', accessTokenTTL: ttl, jwt: { sign: { alg: deps.settings.alg, kid: deps.settings.kid } },
    });
    pendingClaims.set(token, { act });
    await bindToProofKey(provider, ctx, dPoP, token);

    ctx.oidc.entity('AccessToken', token);
    const value = await token.save();
    const issued: IssuedToken = { jti: token.jti!, clientId: client.clientId, expiresAt: now + token.expiration, grantType: TOKEN_EXCHANGE, extra: token.extra };
    deps.onIssued(ctx, issued);

    // a refresh token needs a key to be bound to: only with a DPoP proof
    const refreshToken = caller.grantTypes.includes('refresh_token') && dPoP
      ? await deps.refreshTokens.startFamily({
        clientId: caller.clientId, subject: subject.sub!, subjectClientId: subject.client_id, act, scope: scope ?? '', audience, jkt: dPoP.thumbprint,
      }, issued)
      : undefined;

    ctx.body = buildTokenResponse(provider, {
      accessToken: value,
      expiresIn: token.expiration,
      scope,
      tokenType: token.tokenType,
      issuedTokenType: ACCESS_TOKEN_TYPE,
      refreshToken,
    });
  };
}
