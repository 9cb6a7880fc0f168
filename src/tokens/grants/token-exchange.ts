// RFC 8693 token exchange: a service trades the token it received for a narrower one for the next
// hop. The new token keeps the subject's `sub`, records the caller in `act` (nested per hop, at most
// MAX_DELEGATION_DEPTH hops), is bound to the caller's DPoP key (or its client certificate, for a
// caller with token_binding mtls), and never outlives the subject token.
// It is issued under the chain's locks and recorded in the lineage (see DelegationChains), so revoking
// the subject token or any client of the chain reaches it.
import type { ClientStore } from '../../clients/client-store.js';
import { InvalidClient, InvalidRequest, InvalidTarget } from '../../oidc/refusals.js';
import type { SigilGrant } from '../../oidc/token-endpoint.js';
import type { AccessTokenClaims, AccessTokenVerifier } from '../access-tokens.js';
import { actorsOf, ChainRevoked, type DelegationChains } from '../delegation-chain.js';
import { isAccessTokenRevoked } from '../../revocation/revocation-list.js';
import type { RevocationList } from '../../revocation/revocation-list.js';
import { RefreshTokens } from '../refresh-tokens.js';
import { grantedScope, resolveAudience } from '../token-policy.js';
import { requestBinding, type IssuedToken, type ProofCheck } from './shared.js';

import { TOKEN_EXCHANGE } from '../grant-types.js';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const SUBJECT_TYPES = [ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE];

export const parameters = [
  'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'audience', 'resource', 'scope',
];

export interface TokenExchangeDeps {
  clients: ClientStore;
  accessTokenTtl: number;
  proofs: ProofCheck;
  verify: AccessTokenVerifier;
  revocationList: RevocationList;
  refreshTokens: RefreshTokens;
  chains: DelegationChains;
  /** MAX_DELEGATION_DEPTH */
  maxDepth: number;
}

const audiencesOf = (c: AccessTokenClaims) => (Array.isArray(c.aud) ? c.aud : c.aud ? [c.aud] : []);

export function tokenExchangeGrant(deps: TokenExchangeDeps): SigilGrant {
  /** A token Sigil issued, unexpired, not revoked, from a client that is not revoked. */
  async function sigilToken(token: unknown, what: string): Promise<AccessTokenClaims> {
    if (typeof token !== 'string' || !token) throw new InvalidRequest(`${what} is required`);
    const v = await deps.verify(token);
    if (!v.ok) throw new InvalidRequest(`${what} is not a valid, unexpired access token issued by this server`);
    if (isAccessTokenRevoked(deps.revocationList, v.claims)) throw new InvalidRequest(`${what} has been revoked`);
    return v.claims;
  }

  return async function tokenExchange(request) {
    const { params } = request;
    const caller = await deps.clients.find(request.clientId);
    if (!caller || caller.status !== 'active') throw new InvalidClient('client is not active');

    const { dPoP, x5t } = requestBinding(request, caller, deps.proofs);

    if (!SUBJECT_TYPES.includes(params.subject_token_type as string)) {
      throw new InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE} or ${JWT_TOKEN_TYPE}`);
    }
    if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new InvalidRequest(`only ${ACCESS_TOKEN_TYPE} can be requested`);
    }
    const subject = await sigilToken(params.subject_token, 'subject_token');
    if (!audiencesOf(subject).some((aud) => caller.serves.includes(aud))) {
      throw new InvalidRequest('subject_token is not addressed to an API this client serves');
    }
    const subjectActors = actorsOf(subject.act);
    if (!subjectActors) throw new InvalidRequest('subject_token has been revoked');
    // the new token names one actor more than its subject
    if (subjectActors.length + 1 > deps.maxDepth) {
      throw new InvalidRequest(`the delegation chain would be ${subjectActors.length + 1} exchanges deep; at most ${deps.maxDepth} are allowed (MAX_DELEGATION_DEPTH)`);
    }
    let actor: AccessTokenClaims | undefined;
    if (params.actor_token !== undefined) {
      if (!SUBJECT_TYPES.includes(params.actor_token_type as string)) throw new InvalidRequest('actor_token_type is missing or unsupported');
      actor = await sigilToken(params.actor_token, 'actor_token');
      if (actor.sub !== caller.clientId || actor.client_id !== caller.clientId) throw new InvalidRequest('actor_token must be a token of the calling client');
      // a token the caller holds, not one it saw: bound to the key (or certificate) this very request is proven with
      if (x5t !== undefined) {
        if (actor.cnf?.['x5t#S256'] !== x5t) throw new InvalidRequest('actor_token must be bound to the client certificate this request is made with');
      } else if (!dPoP || actor.cnf?.jkt !== dPoP.thumbprint) throw new InvalidRequest('actor_token must be bound to the DPoP key this request is proven with');
    } else if (params.actor_token_type !== undefined) {
      throw new InvalidRequest('actor_token_type given without actor_token');
    }

    if (params.audience !== undefined && params.resource !== undefined && params.audience !== params.resource) {
      throw new InvalidTarget('give the target as audience or resource, not both');
    }
    const audience = resolveAudience(params.audience ?? params.resource, caller);
    const subjectScope = subject.scope ? subject.scope.split(' ') : [];
    const allowed = subjectScope.filter((s) => caller.scope.includes(s));
    const scope = grantedScope(params.scope, allowed).join(' ') || undefined;

    const now = Math.floor(Date.now() / 1000);
    const ttl = Math.min(deps.accessTokenTtl, subject.exp! - now);
    if (ttl <= 0) throw new InvalidRequest('subject_token has expired');
    const act = { sub: caller.clientId, ...(subject.act ? { act: subject.act } : {}) };

    // replay answer (the assertion's was given during client authentication): a replayed proof is a bad proof
    await request.confirm(dPoP);

    // a refresh token needs something to be bound to: a DPoP proof's key or the client certificate
    const withRefresh = caller.grantTypes.includes('refresh_token') && (dPoP !== undefined || x5t !== undefined);
    const familyId = withRefresh ? RefreshTokens.newFamilyId() : null;
    // an absolute exp, fixed now: the subject's at the latest, however long issuing takes
    const token = await request.sign({
      subject: { sub: subject.sub!, grantId: subject.jti!, gty: 'token_exchange' },
      audience, scope, ttlSeconds: ttl, expiresAt: now + ttl, act, ...(dPoP ? { jkt: dPoP.thumbprint } : {}), ...(x5t !== undefined ? { x5t } : {}),
    });
    const issued: IssuedToken = { jti: token.jti, clientId: request.clientId, expiresAt: token.expiresAt, grantType: TOKEN_EXCHANGE, extra: token.extra };
    const chain = { clients: [caller.clientId, subject.client_id, subject.sub!, ...subjectActors], parentJti: subject.jti!, tokens: actor ? [actor.jti!] : [] };
    const place = { subject: subject.sub!, actors: [caller.clientId, ...subjectActors], parentJti: subject.jti!, familyId };
    const refreshToken = await deps.chains.issue(chain, issued, place, async (tx) => familyId === null ? undefined : deps.refreshTokens.startFamily(tx, {
      clientId: caller.clientId, subject: subject.sub!, subjectClientId: subject.client_id, subjectJti: subject.jti!, subjectExpiresAt: subject.exp!,
      act, scope: scope ?? '', audience, jkt: dPoP?.thumbprint ?? null, x5tS256: x5t ?? null,
    }, familyId, issued)).catch((err: unknown) => {
      // this instance had not heard of the revocation yet; Postgres had (the signed token is dropped)
      if (err instanceof ChainRevoked) throw new InvalidRequest(`subject_token cannot be exchanged: ${err.message}`);
      throw err;
    });
    return {
      issued,
      answer: {
        accessToken: token.value,
        expiresIn: Math.max(0, issued.expiresAt - Math.floor(Date.now() / 1000)),
        scope,
        tokenType: token.tokenType,
        issuedTokenType: ACCESS_TOKEN_TYPE,
        refreshToken,
      },
    };
  };
}
