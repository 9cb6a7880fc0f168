// The fallback when a token's status list cannot be had and the API prefers asking to refusing:
// RFC 7662 introspection at the issuer, authenticated as the verifier's own private_key_jwt client
// (a Sigil client created with --can-introspect, which may see any token).
import type { JWK } from 'jose';
import { clientAssertion, keyPairFromPrivateJwk, type SigningKeyPair } from '../client/oauth-client.js';
import type { FetchLike, IssuerState } from './issuer.js';

export interface IntrospectionClient {
  clientId: string;
  /** the client's private JWK (with `d`) */
  privateJwk: JWK;
}

/** Returns whether the issuer says the token is active; rejects when it cannot be asked. */
export function introspectionFallback(client: IntrospectionClient, issuer: IssuerState, fetchImpl: FetchLike): (token: string) => Promise<boolean> {
  let key: Promise<SigningKeyPair> | undefined;
  return async (token) => {
    key ??= keyPairFromPrivateJwk(client.privateJwk);
    const md = await issuer.metadata();
    if (typeof md.introspection_endpoint !== 'string') throw new Error('the issuer has no introspection endpoint');
    const body = new URLSearchParams({
      token,
      token_type_hint: 'access_token',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await clientAssertion(await key, client.clientId, issuer.issuer),
    });
    const res = await fetchImpl(md.introspection_endpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, body });
    if (res.status !== 200) throw new Error(`introspection answered ${res.status}`);
    const answer = (await res.json()) as { active?: unknown };
    return answer.active === true;
  };
}
