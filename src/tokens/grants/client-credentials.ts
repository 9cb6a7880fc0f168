// The client_credentials grant (RFC 6749 §4.4) as Sigil issues it. It replaces oidc-provider's own
// handler so that Sigil's rules read top to bottom in one place: fresh DPoP proof, registered
// audience, allowed scope (refused, not silently dropped), bound to the proof's key, recorded.
// The one-time claims of the assertion and proof are answered while the proof is checked (see
// HeldClaims); the token is made only once they said "free".
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { buildTokenResponse } from 'oidc-provider/lib/helpers/grants.js';
import type { ClientStore } from '../../clients/client-store.js';
import type { HeldClaims } from '../../oidc/adapter.js';
import { grantedScope, resolveAudience } from '../token-policy.js';
import { bindToProofKey, requireProofIf, tokenRequestProof, whileConfirming, type AccessTokenSettings, type IssuedToken, type ProofCheck } from './shared.js';

export const CLIENT_CREDENTIALS = 'client_credentials';
export const parameters = ['scope', 'resource'];

export interface ClientCredentialsDeps {
  clients: ClientStore;
  settings: AccessTokenSettings;
  proofs: ProofCheck;
  held: HeldClaims | undefined;
  onIssued: (ctx: KoaContextWithOIDC, token: IssuedToken) => void;
}

export function clientCredentialsGrant(provider: Provider, deps: ClientCredentialsDeps) {
  return async function clientCredentials(ctx: KoaContextWithOIDC): Promise<void> {
    const client = ctx.oidc.client!;
    // the proof check overlaps the replay round trip; nothing is allocated or signed before its answer
    const { token, scope } = await whileConfirming(ctx, deps.held, async () => {
      const record = await deps.clients.find(client.clientId);
      if (!record || record.status !== 'active') throw new errors.InvalidClient('client is not active');

      const dPoP = tokenRequestProof(ctx, deps.proofs);
      requireProofIf(record.dpopRequired, dPoP);

      const audience = resolveAudience(ctx.oidc.params!.resource, record);
      const scope = grantedScope(ctx.oidc.params!.scope, record.scope).join(' ') || undefined;

      const token = new provider.ClientCredentials({ client, scope });
      token.resourceServer = new provider.ResourceServer(audience, {
        audience,
        scope: scope ?? '',
        accessTokenFormat: 'jwt',
        accessTokenTTL: deps.settings.ttlSeconds,
        jwt: { sign: { alg: deps.settings.alg, kid: deps.settings.kid } },
      });
      await bindToProofKey(provider, ctx, dPoP, token);

      ctx.oidc.entity('ClientCredentials', token);
      return { token, scope };
    });
    // a replay is refused above: only a request whose assertion and proof were free reaches the
    // status-list index and the signature
    const value = await token.save();
    deps.onIssued(ctx, { jti: token.jti!, clientId: client.clientId, expiresAt: token.exp ?? Math.floor(Date.now() / 1000) + token.expiration, grantType: CLIENT_CREDENTIALS, extra: token.extra });

    ctx.body = buildTokenResponse(provider, {
      accessToken: value,
      expiresIn: token.expiration,
      scope,
      tokenType: token.tokenType,
    });
  };
}
