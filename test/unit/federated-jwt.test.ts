// Federated JWTs as jwt-bearer client assertions (src/workload/federated-jwt.ts): a Kubernetes
// projected service-account token and a GitHub Actions token as they come, then every way one made
// for another audience, by another issuer, for too long or for another workload must be refused.
import assert from 'node:assert/strict';
import { before, beforeEach, describe, it } from 'node:test';
import { unverifiedIssuer, verifyFederatedJwt, type FederatedJwtDeps } from '../../src/workload/federated-jwt.js';
import type { Federation } from '../../src/workload/types.js';
import { b64url, unsignedJwt } from '../support/forge.js';
import { assertRefused, authority, MemoryClientIndex, MemoryTrust, mint, workloadClient, type Authority } from '../support/workload-doubles.js';

const ISSUER = 'https://sigil.example';
const NOW = 1_900_000_000;
const K8S = 'https://kubernetes.default.svc.cluster.local';
const GITHUB = 'https://token.actions.githubusercontent.com';
const SA = 'system:serviceaccount:payments:api';


describe('federated JWT client authentication', () => {
  let k8sKey: Authority;
  let ghKey: Authority;
  let trust: MemoryTrust;
  let clients: MemoryClientIndex;
  let deps: FederatedJwtDeps;
  let k8s: Federation;
  let github: Federation;

  before(async () => {
    k8sKey = await authority('k8s-1', 'RS256', 'sig');
    ghKey = await authority('gh-1', 'RS256', 'sig');
  });

  beforeEach(() => {
    trust = new MemoryTrust();
    k8s = trust.addFederation(K8S, [k8sKey.publicJwk], { maxLifetimeSeconds: 3600 });
    github = trust.addFederation(GITHUB, [ghKey.publicJwk], { audience: 'sigil-prod', maxLifetimeSeconds: 600 });
    clients = new MemoryClientIndex().add(
      workloadClient('c-k8s', { kind: 'federated', issuer: K8S, subject: SA, claims: {} }),
      workloadClient('c-gh', { kind: 'federated', issuer: GITHUB, subject: 'repo:acme/pay:ref:refs/heads/main', claims: { repository: 'acme/pay', ref: 'refs/heads/main' } }),
    );
    deps = { issuer: ISSUER, trust, clients, now: () => NOW };
  });

  /** a projected service-account token as the kubelet writes it: no typ, aud an array, kubernetes.io claims */
  const k8sToken = (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}) =>
    mint(k8sKey, { iss: K8S, sub: SA, aud: [ISSUER], iat: NOW - 60, nbf: NOW - 60, exp: NOW + 3000, 'kubernetes.io': { namespace: 'payments' }, ...claims }, { typ: undefined, ...header });
  const ghToken = (claims: Record<string, unknown> = {}) =>
    mint(ghKey, { iss: GITHUB, sub: 'repo:acme/pay:ref:refs/heads/main', aud: 'sigil-prod', iat: NOW, exp: NOW + 300, repository: 'acme/pay', ref: 'refs/heads/main', jti: 'j', ...claims });

  it('authenticates a Kubernetes projected token with audience = the issuer, as it comes (no typ, aud array, no jti)', async () => {
    const outcome = await verifyFederatedJwt(await k8sToken(), k8s, undefined, deps);
    assert.equal(outcome.ok, true);
    if (!outcome.ok) return;
    assert.deepEqual(outcome.verdict, { clientId: 'c-k8s', method: 'federated_jwt', identity: `${K8S} ${SA}` });
  });

  it('accepts the same token again (reused until refreshed: no jti replay check)', async () => {
    const token = await k8sToken({ jti: 'once' });
    assert.equal((await verifyFederatedJwt(token, k8s, undefined, deps)).ok, true);
    assert.equal((await verifyFederatedJwt(token, k8s, undefined, deps)).ok, true);
  });

  it('authenticates a GitHub Actions token with the configured audience and the required claims', async () => {
    const outcome = await verifyFederatedJwt(await ghToken(), github, 'c-gh', deps);
    assert.equal(outcome.ok, true);
    assert.equal((await verifyFederatedJwt(await ghToken({ aud: ISSUER }), github, undefined, deps)).ok, true);
  });

  it('reads the issuer of an assertion unverified, only to ask whether it is a federation', async () => {
    assert.equal(unverifiedIssuer(await k8sToken()), K8S);
    assert.equal(unverifiedIssuer('nope'), undefined);
    assert.equal(unverifiedIssuer(unsignedJwt({ alg: 'none' }, { iss: 7 })), undefined);
  });

  describe('refuses a token', () => {
    it('for another audience (a Kubernetes token for the API server), the token endpoint, or several', async () => {
      for (const aud of [['https://kubernetes.default.svc'], [`${ISSUER}/token`], [ISSUER, 'https://kubernetes.default.svc'], 'sigil-prod', [], undefined]) {
        assertRefused(await verifyFederatedJwt(await k8sToken({ aud }), k8s, undefined, deps), /aud must be/);
      }
      assertRefused(await verifyFederatedJwt(await ghToken({ aud: ['sigil-prod', 'other'] }), github, undefined, deps), /aud must be a single value/);
    });

    it('whose iss is not the federation it is checked against', async () => {
      assertRefused(await verifyFederatedJwt(await k8sToken({ iss: 'https://evil.example' }), k8s, undefined, deps), /iss is not/);
    });

    it('of an issuer that was removed, or whose keys are past their bound', async () => {
      trust.federations.delete(K8S);
      assertRefused(await verifyFederatedJwt(await k8sToken(), k8s, undefined, deps), /not configured/);
      trust.federations.set(K8S, { federation: k8s, keys: { ok: false, problem: 'the keys of the issuer are stale' } });
      assertRefused(await verifyFederatedJwt(await k8sToken(), k8s, undefined, deps), /stale/);
    });

    it('signed by another issuer\'s key, or by a key the issuer does not publish', async () => {
      assertRefused(await verifyFederatedJwt(await mint(ghKey, { iss: K8S, sub: SA, aud: ISSUER, iat: NOW, exp: NOW + 60 }, { kid: 'k8s-1' }), k8s, undefined, deps), /signature does not verify/);
      assertRefused(await verifyFederatedJwt(await k8sToken({}, { kid: 'gone' }), k8s, undefined, deps), /names no current RS256 key .*kid "gone"/);
    });

    it('without exp, expired, or living longer than the federation allows (exp - iat, or exp - now without iat)', async () => {
      assertRefused(await verifyFederatedJwt(await k8sToken({ exp: undefined }), k8s, undefined, deps), /must have an exp/);
      assertRefused(await verifyFederatedJwt(await k8sToken({ exp: NOW - 10 }), k8s, undefined, deps), /has expired/);
      assertRefused(await verifyFederatedJwt(await ghToken({ iat: NOW - 100, exp: NOW + 501 }), github, undefined, deps), /lives 601 seconds, longer than the 600/);
      assertRefused(await verifyFederatedJwt(await ghToken({ iat: undefined, exp: NOW + 606 }), github, undefined, deps), /lives 606 seconds/);
      assert.equal((await verifyFederatedJwt(await ghToken({ iat: undefined, exp: NOW + 600 }), github, undefined, deps)).ok, true);
    });

    it('not yet valid: nbf or iat in the future', async () => {
      assertRefused(await verifyFederatedJwt(await k8sToken({ nbf: NOW + 60 }), k8s, undefined, deps), /not yet valid/);
      assertRefused(await verifyFederatedJwt(await k8sToken({ iat: NOW + 60, nbf: undefined }), k8s, undefined, deps), /iat is in the future/);
    });

    it('with alg none or HS256 (also with the issuer\'s public key as the secret)', async () => {
      const claims = { iss: K8S, sub: SA, aud: ISSUER, iat: NOW, exp: NOW + 60 };
      assertRefused(await verifyFederatedJwt(unsignedJwt({ alg: 'none', kid: 'k8s-1' }, claims), k8s, undefined, deps), /alg "none" is not accepted/);
      for (const secret of [JSON.stringify(k8sKey.publicJwk), b64url(k8sKey.publicJwk)]) {
        assertRefused(await verifyFederatedJwt(await mint(k8sKey, claims, { alg: 'HS256' }, new TextEncoder().encode(secret)), k8s, undefined, deps), /alg "HS256" is not accepted/);
      }
    });

    it('whose typ says it is another kind of JWT', async () => {
      for (const typ of ['dpop+jwt', 'at+jwt', 'statuslist+jwt']) {
        assertRefused(await verifyFederatedJwt(await k8sToken({}, { typ }), k8s, undefined, deps), /is not a client assertion/);
      }
    });

    it('whose sub matches no client, or is missing', async () => {
      assertRefused(await verifyFederatedJwt(await k8sToken({ sub: 'system:serviceaccount:payments:other' }), k8s, undefined, deps), /no active client is bound to issuer .* subject "system:serviceaccount:payments:other"/);
      assertRefused(await verifyFederatedJwt(await k8sToken({ sub: undefined }), k8s, undefined, deps), /must have a sub/);
    });

    it('with a required claim missing, different, or of another type', async () => {
      assertRefused(await verifyFederatedJwt(await ghToken({ ref: undefined }), github, undefined, deps), /lacks the required claim "ref"/);
      assertRefused(await verifyFederatedJwt(await ghToken({ ref: 'refs/heads/evil' }), github, undefined, deps), /claim "ref" is not the required value/);
      assertRefused(await verifyFederatedJwt(await ghToken({ repository: ['acme/pay'] }), github, undefined, deps), /claim "repository" is not the required value/);
    });

    it('matching two clients, or only a revoked one', async () => {
      clients.add(workloadClient('c-k8s-2', { kind: 'federated', issuer: K8S, subject: SA, claims: {} }));
      assertRefused(await verifyFederatedJwt(await k8sToken(), k8s, undefined, deps), /several clients are bound/);
      clients.clients.splice(0);
      clients.add(workloadClient('c-k8s-r', { kind: 'federated', issuer: K8S, subject: SA, claims: {} }, { status: 'revoked' }));
      assertRefused(await verifyFederatedJwt(await k8sToken(), k8s, undefined, deps), /no active client/);
    });

    it('with client_id naming another client', async () => {
      assertRefused(await verifyFederatedJwt(await k8sToken(), k8s, 'c-gh', deps), /client_id "c-gh" is not the client/);
    });
  });

  it('answers unavailable (fail closed) when keys or clients cannot be read', async () => {
    trust.failure = new Error('down');
    assert.equal((await verifyFederatedJwt(await k8sToken(), k8s, undefined, deps) as { kind: string }).kind, 'unavailable');
    trust.failure = undefined;
    clients.failure = new Error('down');
    assert.equal((await verifyFederatedJwt(await k8sToken(), k8s, undefined, deps) as { kind: string }).kind, 'unavailable');
  });
});
