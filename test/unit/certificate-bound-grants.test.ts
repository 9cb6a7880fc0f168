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
