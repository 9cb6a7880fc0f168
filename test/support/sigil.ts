// Speaking to a running Sigil the way its users do: bootstrap the admin, create clients through the
// admin API, and get tokens with private_key_jwt + DPoP.
import { SignJWT } from 'jose';
import {
  clientAssertion, dpopProof, generateClientKey, keyPairFromPrivateJwk, requestToken, type KeyAlg, type SigningKeyPair, type TokenRequest,
} from '../../src/client/oauth-client.js';
import { postToken, type RawResponse, type SecretLedger } from './forge.js';

export interface Admin {
  key: SigningKeyPair;
  /** call the admin API with a fresh admin token and proof */
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
}

export async function bootstrapAdmin(url: string, issuer: string): Promise<Admin> {
  const { privateJwk } = await generateClientKey('ES256');
  const key = await keyPairFromPrivateJwk(privateJwk);
  const { kid: _k, alg: _a, use: _u, ...jwk } = key.publicJwk;
  const proof = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', typ: 'sigil-bootstrap+jwt', jwk })
    .setAudience(`${issuer}/admin/bootstrap`)
    .setIssuedAt()
    .sign(key.privateKey);
  const res = await fetch(`${url}/admin/bootstrap`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ proof }) });
  if (res.status !== 201) throw new Error(`bootstrap failed: ${res.status} ${await res.text()}`);
  return adminWithKey(url, issuer, key);
}

export function adminWithKey(url: string, issuer: string, key: SigningKeyPair): Admin {
  return {
    key,
    // a fresh admin token for every call, as separate CLI runs would get
    call: async (method, path, body) => (await adminSession(url, issuer, key))(method, path, body),
  };
}

/** One admin token, a fresh DPoP proof per call: several admin calls without a token request each. */
export async function adminSession(url: string, issuer: string, key: SigningKeyPair): Promise<Admin['call']> {
  const token = await requestToken({
    tokenEndpoint: `${url}/token`, htu: `${issuer}/token`, issuer, clientId: 'sigil-admin', clientKey: key, dpopKey: key,
    resource: `${issuer}/admin`, scope: 'sigil:admin',
  });
  return async (method, path, body) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: `DPoP ${token.access_token}`,
        dpop: await dpopProof(key, method, `${issuer}${path}`, { accessToken: token.access_token }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json().catch(() => undefined) };
  };
}

export interface TestClient {
  clientId: string;
  key: SigningKeyPair;
  dpopKey: SigningKeyPair;
  record: any;
}

export async function createClient(admin: Admin, opts: { alg?: KeyAlg; name?: string; scope?: string; audiences?: string[]; serves?: string[]; grant_types?: string[]; dpop?: 'required' | 'optional'; can_introspect?: boolean } = {}): Promise<TestClient> {
  const { privateJwk, publicJwks } = await generateClientKey(opts.alg ?? 'ES256');
  const res = await admin.call('POST', '/admin/clients', {
    name: opts.name ?? 'test client',
    jwks: publicJwks,
    scope: opts.scope ?? 'orders:read orders:write',
    audiences: opts.audiences ?? ['https://api.example.com/orders'],
    serves: opts.serves,
    grant_types: opts.grant_types,
    dpop: opts.dpop,
    can_introspect: opts.can_introspect,
  });
  if (res.status !== 201) throw new Error(`client creation failed: ${res.status} ${JSON.stringify(res.body)}`);
  const key = await keyPairFromPrivateJwk(privateJwk);
  const dpopKey = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
  return { clientId: res.body.client_id, key, dpopKey, record: res.body };
}

/** A token request for `client` against `url`, with proofs addressed to the issuer. */
export function tokenRequest(url: string, issuer: string, client: TestClient, extra: Partial<TokenRequest> = {}): TokenRequest {
  return { tokenEndpoint: `${url}/token`, htu: `${issuer}/token`, issuer, clientId: client.clientId, clientKey: client.key, dpopKey: client.dpopKey, ...extra };
}

/** Where one raw token request goes and with which DPoP key (null: no proof; default the client's own). */
export interface TokenCallOptions {
  on?: { url: string };
  dpopKey?: SigningKeyPair | null;
}

/**
 * One raw token request by `who` (private_key_jwt, DPoP): exactly `params` besides the client
 * authentication, sent to `opts.on` (default `server`), every proof addressed to `issuer`. What it
 * answers is recorded in `ledger`, when given, so that a later log check can look for it.
 */
export async function rawTokenCall(server: { url: string }, issuer: string, who: TestClient, params: Record<string, string | undefined>, opts: TokenCallOptions = {}, ledger?: SecretLedger): Promise<RawResponse> {
  const key = opts.dpopKey === undefined ? who.dpopKey : opts.dpopKey;
  const res = await postToken(`${(opts.on ?? server).url}/token`, {
    assertion: await clientAssertion(who.key, who.clientId, issuer),
    proof: key ? await dpopProof(key, 'POST', `${issuer}/token`) : undefined,
    params,
  });
  return ledger ? ledger.addResponse(res) : res;
}
