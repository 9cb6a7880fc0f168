// Certificate-bound tokens at the grants (RFC 8705 §3), through their seam (a TokenRequest): a client
// with token_binding mtls gets cnf.x5t#S256 of the certificate its request came with, needs one, and
// sends no DPoP proof; its refresh tokens are used only with that certificate. The end-to-end path
// (a workload client authenticated by its certificate at /token) is in the integration tests.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientRecord, ClientStore } from '../../src/clients/client-store.js';
import type { AccessTokenOrder, TokenRequest } from '../../src/oidc/token-endpoint.js';
import { clientCredentialsGrant } from '../../src/tokens/grants/client-credentials.js';
import { refreshTokenGrant } from '../../src/tokens/grants/refresh-token.js';
import { ACCESS_TOKEN_TYPE, tokenExchangeGrant } from '../../src/tokens/grants/token-exchange.js';
import type { AccessTokenClaims } from '../../src/tokens/access-tokens.js';
import type { DelegationChains } from '../../src/tokens/delegation-chain.js';
import type { RevocationList } from '../../src/revocation/revocation-list.js';
import type { ProofCheck } from '../../src/tokens/grants/shared.js';
import type { RefreshTokenRecord } from '../../src/tokens/refresh-token-store.js';
import type { RefreshTokens } from '../../src/tokens/refresh-tokens.js';
import type { PresentedCertificate } from '../../src/workload/types.js';
import { mintCa, mintLeaf, type Minted } from '../support/x509.js';

const ca = mintCa('/CN=grants CA');
const certA = mintLeaf(ca, { subject: '/CN=A' });
const certB = mintLeaf(ca, { subject: '/CN=B' });
const presented = (m: Minted): PresentedCertificate => ({ certificate: m.x509, chain: [], thumbprint: m.thumbprint, via: 'tls' });

const record = (over: Partial<ClientRecord> = {}): ClientRecord => ({
  clientId: 'w1', name: 'worker', status: 'active', scope: ['orders:read'], audiences: ['https://api.example.com'], serves: [],
  grantTypes: ['client_credentials', 'refresh_token'], dpopRequired: false, canIntrospect: false, isAdmin: false,
  workload: { kind: 'self-signed-tls', thumbprints: [certA.thumbprint] }, tokenBinding: 'mtls', createdAt: new Date(), updatedAt: new Date(), ...over,
});
const clientsOf = (r: ClientRecord) => ({ find: async (id: string) => (id === r.clientId ? r : undefined) }) as unknown as ClientStore;
/** never reached by a certificate-bound client: a DPoP header is refused before any proof is checked */
const proofs = { verifier: { verify: () => assert.fail('no DPoP proof is checked'), nextNonce: () => undefined }, tokenEndpoint: 'https://as.example/token' } as unknown as ProofCheck;

/** a TokenRequest as the oidc layer makes it, recording what is signed */
function tokenRequest(opts: { certificate?: PresentedCertificate; dpop?: string; params?: Record<string, unknown> } = {}) {
  const signed: AccessTokenOrder[] = [];
  const request: TokenRequest = {
    clientId: 'w1', params: opts.params ?? {}, method: 'POST', dpop: opts.dpop, certificate: opts.certificate,
    setHeader: () => {},
    confirm: async () => {},
    async sign(order) {
      signed.push(order);
      return { value: 'at', jti: `jti-${signed.length}`, expiresAt: Math.floor(Date.now() / 1000) + 300, expiresIn: 300, tokenType: order.jkt ? 'DPoP' : 'Bearer', extra: undefined };
    },
  };
  return { request, signed };
}

async function refused(p: Promise<unknown>, error: string, description: RegExp): Promise<void> {
  await assert.rejects(p, (err: { error?: string; error_description?: string; error_detail?: string }) => {
    assert.equal(err.error, error);
    // invalid_grant keeps its reason in error_detail (oidc-provider), the others in error_description
    assert.match(err.error_detail ?? err.error_description ?? '', description);
    return true;
  });
}

describe('client_credentials for a token_binding mtls client', () => {
  const grant = clientCredentialsGrant({ clients: clientsOf(record()), accessTokenTtl: 300, proofs });

  it('binds the token to the certificate the request came with: cnf.x5t#S256, token_type Bearer, no DPoP', async () => {
    const { request, signed } = tokenRequest({ certificate: presented(certA) });
    const outcome = await grant(request);
    assert.equal(signed[0]!.x5t, certA.thumbprint);
    assert.equal(signed[0]!.jkt, undefined);
    assert.equal(outcome.answer.tokenType, 'Bearer');
  });

  it('refuses a request without a certificate (invalid_request) and one with a DPoP proof', async () => {
    await refused(grant(tokenRequest().request), 'invalid_request', /client certificate is required/);
    await refused(grant(tokenRequest({ certificate: presented(certA), dpop: 'eyJ.x.y' }).request), 'invalid_request', /send no DPoP proof/);
  });

  it('leaves a DPoP client as it was: no certificate binding, even when a certificate came along', async () => {
    const dpopClient = clientCredentialsGrant({ clients: clientsOf(record({ tokenBinding: 'dpop', dpopRequired: false })), accessTokenTtl: 300, proofs });
    const { request, signed } = tokenRequest({ certificate: presented(certA) });
    await dpopClient(request);
    assert.equal(signed[0]!.x5t, undefined);
  });
});

describe('refresh_token for a token_binding mtls client', () => {
  const family: RefreshTokenRecord = {
    tokenHash: 'h', familyId: 'f1', clientId: 'w1', subject: 'u1', subjectClientId: 'c0', subjectJti: 'j0', act: { sub: 'w1' }, scope: 'orders:read',
    audience: 'https://api.example.com', jkt: null, x5tS256: certA.thumbprint, familyExpiresAt: Math.floor(Date.now() / 1000) + 3600, consumed: false,
  };
  const refreshTokens = (r: RefreshTokenRecord) => ({
    find: async () => r, deadReason: () => undefined, rotate: async () => ({ refreshToken: 'srt_next' }), reused: async () => true,
  }) as unknown as RefreshTokens;
  const grant = (r = family, client = record()) => refreshTokenGrant({ clients: clientsOf(client), accessTokenTtl: 300, proofs, refreshTokens: refreshTokens(r) });
  const params = { refresh_token: 'srt_presented' };

  it('refreshes with the certificate the family is bound to; the new access token is bound to it too', async () => {
    const { request, signed } = tokenRequest({ certificate: presented(certA), params });
    const outcome = await grant()(request);
    assert.equal(signed[0]!.x5t, certA.thumbprint);
    assert.equal(signed[0]!.jkt, undefined);
    assert.equal(outcome.answer.refreshToken, 'srt_next');
  });

  it('refuses another certificate (invalid_grant), none (invalid_request), and a DPoP-bound family', async () => {
    await refused(grant()(tokenRequest({ certificate: presented(certB), params }).request), 'invalid_grant', /bound to another client certificate/);
    await refused(grant()(tokenRequest({ params }).request), 'invalid_request', /client certificate is required/);
    const dpopFamily = { ...family, jkt: 'some-jkt', x5tS256: null };
    await refused(grant(dpopFamily)(tokenRequest({ certificate: presented(certA), params }).request), 'invalid_grant', /bound to another client certificate/);
  });
});

describe('token exchange for a token_binding mtls caller', () => {
  const API = 'https://api.example.com';
  const now = () => Math.floor(Date.now() / 1000);
  const subject: AccessTokenClaims = { iss: 'https://as.example', sub: 'u1', client_id: 'c0', aud: API, exp: now() + 300, iat: now(), jti: 'subj', scope: 'orders:read' } as AccessTokenClaims;
  const actorBoundTo = (m: Minted): AccessTokenClaims => ({ ...subject, sub: 'w1', client_id: 'w1', jti: `actor-${m.thumbprint}`, cnf: { 'x5t#S256': m.thumbprint } }) as AccessTokenClaims;
  const tokens = new Map<string, AccessTokenClaims>([['subject-token', subject], ['actor-A', actorBoundTo(certA)], ['actor-B', actorBoundTo(certB)]]);
  const started: Array<Record<string, unknown>> = [];
  const caller = record({ serves: [API], audiences: ['https://api.example.com/next'], grantTypes: ['urn:ietf:params:oauth:grant-type:token-exchange', 'refresh_token'] });
  const grant = tokenExchangeGrant({
    clients: clientsOf(caller), accessTokenTtl: 300, proofs, maxDepth: 5,
    verify: async (t: string) => (tokens.has(t) ? { ok: true, claims: tokens.get(t)! } : { ok: false }),
    revocationList: { isTokenRevoked: () => false, isClientRevoked: () => false } as unknown as RevocationList,
    refreshTokens: { startFamily: async (_tx: unknown, start: Record<string, unknown>) => (started.push(start), 'srt_first') } as unknown as RefreshTokens,
    chains: { issue: async (_c: unknown, _i: unknown, _p: unknown, alongside: (tx: unknown) => Promise<unknown>) => alongside({}) } as unknown as DelegationChains,
  } as Parameters<typeof tokenExchangeGrant>[0]);
  const params = (extra: Record<string, unknown> = {}) => ({ subject_token: 'subject-token', subject_token_type: ACCESS_TOKEN_TYPE, ...extra });

  it('binds the exchanged token and its refresh family to the caller\'s certificate', async () => {
    const { request, signed } = tokenRequest({ certificate: presented(certA), params: params() });
    const outcome = await grant(request);
    assert.equal(signed[0]!.x5t, certA.thumbprint);
    assert.equal(signed[0]!.jkt, undefined);
    assert.equal(outcome.answer.refreshToken, 'srt_first');
    assert.equal(started.at(-1)!.x5tS256, certA.thumbprint);
    assert.equal(started.at(-1)!.jkt, null);
  });

  it('takes an actor_token only when it is bound to the certificate of this request', async () => {
    const withActor = (actor: string) => params({ actor_token: actor, actor_token_type: ACCESS_TOKEN_TYPE });
    const { request, signed } = tokenRequest({ certificate: presented(certA), params: withActor('actor-A') });
    await grant(request);
    assert.equal(signed[0]!.x5t, certA.thumbprint);
    await refused(grant(tokenRequest({ certificate: presented(certA), params: withActor('actor-B') }).request), 'invalid_request', /bound to the client certificate this request is made with/);
  });

  it('refuses the exchange without a certificate', async () => {
    await refused(grant(tokenRequest({ params: params() }).request), 'invalid_request', /client certificate is required/);
  });
});
