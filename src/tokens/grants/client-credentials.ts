// The client_credentials grant (RFC 6749 §4.4) as Sigil issues it, top to bottom: the client is
// authenticated already (oidc-provider, src/oidc/provider.ts); the grant decides (active client,
// fresh DPoP proof, registered audience, allowed scope: refused, not silently dropped), waits for the
// replay answer of the assertion and proof, then has the token signed, bound to the proof's key (or,
// for a client with token_binding mtls, to its client certificate: RFC 8705 §3).
// The replay round trip runs while the grant decides: a replay does no issuance work.
import type { ClientStore } from '../../clients/client-store.js';
import { InvalidClient } from '../../oidc/refusals.js';
import type { SigilGrant } from '../../oidc/token-endpoint.js';
import { grantedScope, resolveAudience } from '../token-policy.js';
import { requestBinding, type ProofCheck } from './shared.js';

import { CLIENT_CREDENTIALS } from '../grant-types.js';
export const parameters = ['scope', 'resource'];

export interface ClientCredentialsDeps {
  clients: ClientStore;
  accessTokenTtl: number;
  proofs: ProofCheck;
}

export function clientCredentialsGrant(deps: ClientCredentialsDeps): SigilGrant {
  return async function clientCredentials(request) {
    // authentication: done before the grant runs (oidc-provider with Sigil's rules): request.clientId
    // decision
    const record = await deps.clients.find(request.clientId);
    if (!record || record.status !== 'active') throw new InvalidClient('client is not active');
    const { dPoP, x5t } = requestBinding(request, record, deps.proofs);
    const audience = resolveAudience(request.params.resource, record);
    const scope = grantedScope(request.params.scope, record.scope).join(' ') || undefined;

    // replay answer: only a request whose assertion and proof were free goes on
    await request.confirm(dPoP);

    // storage and signature: the status-list index, then the signed token
    const token = await request.sign({ audience, scope, ttlSeconds: deps.accessTokenTtl, jkt: dPoP?.thumbprint, x5t });
    return {
      issued: { jti: token.jti, clientId: request.clientId, expiresAt: token.expiresAt, grantType: CLIENT_CREDENTIALS, extra: token.extra },
      answer: { accessToken: token.value, expiresIn: token.expiresIn, scope, tokenType: token.tokenType },
    };
  };
}
