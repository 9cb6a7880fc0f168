// What the admin may configure for workload identity (trust domains, federations, workload-bound
// clients), the overlap rule that keeps "one credential, one client" true, and the fail-closed bound
// of the trust copy.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ClientInputError, clientView, parseNewClient } from '../../src/clients/admin-clients.js';
import type { DestinationPolicy } from '../../src/outbound/destination.js';
import { parseSpiffePattern } from '../../src/workload/spiffe-id.js';
import {
  parseNewFederation, parseNewTrustDomain, removalKey, TrustInputError,
} from '../../src/workload/trust-input.js';
import {
  bindingsOverlap, federatedBindingsOverlap, parseWorkloadBinding, spiffePatternsOverlap, WorkloadInputError,
} from '../../src/workload/workload-binding.js';

const STRICT: DestinationPolicy = { allowHttpLoopback: false, allowedHosts: [] };
const DEV: DestinationPolicy = { allowHttpLoopback: true, allowedHosts: [] };
const ISSUER = 'https://sigil.example';

const pattern = (p: string) => {
  const parsed = parseSpiffePattern(p);
  assert.ok(parsed.ok, p);
  return parsed.value;
};

describe('trust domain input', () => {
  it('takes a trust domain name and an https bundle endpoint', () => {
    assert.deepEqual(parseNewTrustDomain({ name: 'example.org', bundle_endpoint: 'https://spire.example.org/bundle' }, STRICT),
      { name: 'example.org', bundleEndpoint: 'https://spire.example.org/bundle' });
  });

  it('refuses names a SPIFFE ID cannot have, and "." or ".."', () => {
    for (const name of ['Example.org', 'exa mple.org', '', 'a/b', 'x'.repeat(256), '.', '..', 42, null, 'spiffe://example.org']) {
      assert.throws(() => parseNewTrustDomain({ name, bundle_endpoint: 'https://spire.example.org/b' }, STRICT), TrustInputError, String(name));
    }
  });

  it('checks the bundle endpoint with the jwks_uri destination rules', () => {
    const refused: Array<[string, RegExp]> = [
      ['http://spire.example.org/b', /must use https/],
      ['https://user:pw@spire.example.org/b', /credentials/],
      ['https://10.0.0.1/b', /private address/],
      ['https://127.0.0.1/b', /loopback address/],
      ['https://[::1]/b', /loopback address/],
      ['https://169.254.169.254/latest', /link-local/],
      ['https://spire.example.org/b#x', /fragment/],
      ['ftp://spire.example.org/b', /https/],
      ['not a url', /must be written in printable ASCII|not an absolute URL/],
      ['https://spire.example.org/\u202eb', /printable ASCII/],
    ];
    for (const [url, message] of refused) {
      assert.throws(() => parseNewTrustDomain({ name: 'example.org', bundle_endpoint: url }, STRICT), message, url);
    }
    // the development switch lets loopback http through, and only loopback
    assert.doesNotThrow(() => parseNewTrustDomain({ name: 'example.org', bundle_endpoint: 'http://127.0.0.1:8443/b' }, DEV));
    assert.throws(() => parseNewTrustDomain({ name: 'example.org', bundle_endpoint: 'http://10.0.0.1/b' }, DEV), /https/);
    // JWKS_URI_ALLOWED_HOSTS lets an internal host be named
    assert.doesNotThrow(() => parseNewTrustDomain({ name: 'example.org', bundle_endpoint: 'https://10.0.0.1/b' }, { allowHttpLoopback: false, allowedHosts: ['10.0.0.1'] }));
  });

  it('refuses unknown members instead of ignoring them', () => {
    assert.throws(() => parseNewTrustDomain({ name: 'example.org', bundle_endpoint: 'https://a.example/b', bundle_url: 'x' }, STRICT), /unknown member "bundle_url"/);
    assert.throws(() => parseNewTrustDomain([], STRICT), /JSON object/);
  });
});

describe('federation input', () => {
  it('defaults max lifetime to 3600 and leaves jwks_uri (discovery) and audience unset', () => {
    assert.deepEqual(parseNewFederation({ issuer: 'https://token.actions.githubusercontent.com' }, STRICT),
      { issuer: 'https://token.actions.githubusercontent.com', jwksUri: undefined, audience: undefined, maxLifetimeSeconds: 3600 });
  });

  it('bounds max_lifetime_seconds to 60..86400 whole seconds', () => {
    for (const ok of [60, 86400, 600]) assert.equal(parseNewFederation({ issuer: 'https://k8s.example', max_lifetime_seconds: ok }, STRICT).maxLifetimeSeconds, ok);
    for (const bad of [59, 86401, 0, -1, 1.5, '600', null, Number.NaN, 1e308]) {
      if (bad === null) continue; // null means the default
      assert.throws(() => parseNewFederation({ issuer: 'https://k8s.example', max_lifetime_seconds: bad }, STRICT), /from 60 to 86400/, String(bad));
    }
  });

  it('checks issuer and jwks_uri as fetch destinations; no query on the issuer', () => {
    assert.throws(() => parseNewFederation({ issuer: 'http://k8s.example' }, STRICT), /issuer must use https/);
    assert.throws(() => parseNewFederation({ issuer: 'https://192.168.1.1' }, STRICT), /issuer .*private address/);
    assert.throws(() => parseNewFederation({ issuer: 'https://k8s.example?x=1' }, STRICT), /query/);
    assert.throws(() => parseNewFederation({ issuer: 'https://k8s.example', jwks_uri: 'https://10.1.1.1/keys' }, STRICT), /jwks_uri .*private address/);
    assert.equal(parseNewFederation({ issuer: 'https://k8s.example', jwks_uri: 'https://k8s.example/openid/v1/jwks' }, STRICT).jwksUri, 'https://k8s.example/openid/v1/jwks');
  });

  it('takes a printable audience, compared exactly (no surrounding spaces, no controls)', () => {
    assert.equal(parseNewFederation({ issuer: 'https://k8s.example', audience: 'sts.amazonaws.com' }, STRICT).audience, 'sts.amazonaws.com');
    for (const bad of ['', ' x', 'x ', 'a\nb', 'a\u202eb', 'x'.repeat(2001), 7]) {
      assert.throws(() => parseNewFederation({ issuer: 'https://k8s.example', audience: bad }, STRICT), TrustInputError, JSON.stringify(bad));
    }
  });

  it('a removal names its key in the body', () => {
    assert.equal(removalKey({ issuer: 'https://k8s.example' }, 'issuer'), 'https://k8s.example');
    assert.throws(() => removalKey({ issuer: '' }, 'issuer'), TrustInputError);
    assert.throws(() => removalKey({ name: 'x', extra: 1 }, 'name'), /unknown member/);
  });
});

describe('SPIFFE pattern overlap', () => {
  const cases: Array<[string, string, boolean]> = [
    ['spiffe://example.org/ns/a', 'spiffe://example.org/ns/a', true],
    ['spiffe://example.org/ns/a', 'spiffe://example.org/ns/b', false],
    ['spiffe://example.org/ns/a', 'spiffe://other.org/ns/a', false],
    // an exact ID under a prefix
    ['spiffe://example.org/ns/pay/*', 'spiffe://example.org/ns/pay/api', true],
    ['spiffe://example.org/ns/pay/*', 'spiffe://example.org/ns/pay/api/x', true],
    // the prefix itself is not under it, nor a sibling sharing characters
    ['spiffe://example.org/ns/pay/*', 'spiffe://example.org/ns/pay', false],
    ['spiffe://example.org/ns/pay/*', 'spiffe://example.org/ns/payments', false],
    ['spiffe://example.org/ns/pay/*', 'spiffe://example.org/ns/payments/api', false],
    // prefix within prefix
    ['spiffe://example.org/ns/*', 'spiffe://example.org/ns/pay/*', true],
    ['spiffe://example.org/ns/pay/*', 'spiffe://example.org/ns/pay/*', true],
    ['spiffe://example.org/ns/pay/*', 'spiffe://example.org/ns/payments/*', false],
    ['spiffe://example.org/ns/pay/*', 'spiffe://other.org/ns/pay/*', false],
  ];
  for (const [a, b, overlap] of cases) {
    it(`${a} ${overlap ? 'overlaps' : 'does not overlap'} ${b} (both ways)`, () => {
      assert.equal(spiffePatternsOverlap(pattern(a), pattern(b)), overlap);
      assert.equal(spiffePatternsOverlap(pattern(b), pattern(a)), overlap);
      assert.equal(bindingsOverlap({ kind: 'spiffe', spiffeId: a }, { kind: 'spiffe', spiffeId: b }), overlap);
    });
  }
});

describe('federated binding overlap', () => {
  const k8s = 'https://k8s.example';
  const fed = (subject: string, claims: Record<string, string> = {}) => ({ issuer: k8s, subject, claims });
  it('same issuer, subject and claims overlap; another subject or issuer does not', () => {
    assert.equal(federatedBindingsOverlap(fed('a'), fed('a')), true);
    assert.equal(federatedBindingsOverlap(fed('a'), fed('b')), false);
    assert.equal(federatedBindingsOverlap(fed('a'), { ...fed('a'), issuer: 'https://other.example' }), false);
  });
  it('claims tell two clients apart only when both require one claim with different values', () => {
    assert.equal(federatedBindingsOverlap(fed('a', { ref: 'refs/heads/main' }), fed('a', { ref: 'refs/heads/dev' })), false);
    // a token with no ref matches the first; one with ref=main matches both
    assert.equal(federatedBindingsOverlap(fed('a'), fed('a', { ref: 'refs/heads/main' })), true);
    // a token carrying both claims matches both
    assert.equal(federatedBindingsOverlap(fed('a', { repository: 'o/r' }), fed('a', { ref: 'refs/heads/main' })), true);
  });
  it('TLS bindings never clash (the request names its client_id)', () => {
    assert.equal(bindingsOverlap({ kind: 'tls', sanDns: 'a.example' }, { kind: 'tls', sanDns: 'a.example' }), false);
  });
});

describe('workload-bound client input', () => {
  let certPem: string;
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'sigil-wl-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(tmp, 'k.pem'),
      '-out', path.join(tmp, 'c.pem'), '-days', '1', '-subj', '/CN=self-signed-client'], { stdio: 'ignore' });
    certPem = readFileSync(path.join(tmp, 'c.pem'), 'utf8');
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const base = { name: 'w', scope: 'read' };

  it('a SPIFFE ID or prefix: stored as a spiffe binding, shown as spiffe_jwt', () => {
    const c = parseNewClient({ ...base, spiffe_id: 'spiffe://example.org/ns/payments/*' }, ISSUER);
    assert.deepEqual(c.workload, { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/payments/*' });
    assert.equal(c.jwks, undefined);
    assert.equal(c.jwksUri, undefined);
    assert.equal(c.tokenBinding, 'dpop');
    assert.equal(c.dpopRequired, true);
    const view = clientView({ ...c, status: 'active', createdAt: new Date(0), updatedAt: new Date(0) });
    assert.equal(view.token_endpoint_auth_method, 'spiffe_jwt');
    assert.equal(view.spiffe_id, 'spiffe://example.org/ns/payments/*');
    assert.equal(view.token_binding, 'dpop');
    assert.ok(!('jwks' in view) && !('jwks_uri' in view));
  });

  it('refuses SPIFFE IDs without a path, bad segments, wrong case', () => {
    for (const id of ['spiffe://example.org', 'spiffe://example.org/*', 'SPIFFE://example.org/a', 'spiffe://example.org/a/../b', 'spiffe://example.org/a//b', 'spiffe://Example.org/a', 'spiffe://example.org/a/']) {
      assert.throws(() => parseNewClient({ ...base, spiffe_id: id }, ISSUER), ClientInputError, id);
    }
  });

  it('exactly one credential', () => {
    assert.throws(() => parseNewClient({ ...base }, ISSUER), /exactly one credential/);
    assert.throws(() => parseNewClient({ ...base, spiffe_id: 'spiffe://e.org/a', jwks_uri: 'https://e.org/j' }, ISSUER), /exactly one credential/);
    assert.throws(() => parseNewClient({ ...base, spiffe_id: 'spiffe://e.org/a', tls_client_auth_san_dns: 'a.e.org' }, ISSUER), /exactly one credential/);
    assert.throws(() => parseNewClient({ ...base, tls_client_auth_san_dns: 'a.e.org', tls_client_auth_san_ip: '10.0.0.1' }, ISSUER), /exactly one credential/);
  });

  it('a federated subject with bounded string claims', () => {
    const c = parseNewClient({ ...base, federated_subject: { issuer: 'https://token.actions.githubusercontent.com', subject: 'repo:o/r:ref:refs/heads/main' }, required_claims: { repository: 'o/r' } }, ISSUER);
    assert.deepEqual(c.workload, { kind: 'federated', issuer: 'https://token.actions.githubusercontent.com', subject: 'repo:o/r:ref:refs/heads/main', claims: { repository: 'o/r' } });
    const view = clientView({ ...c, status: 'active', createdAt: new Date(0), updatedAt: new Date(0) });
    assert.equal(view.token_endpoint_auth_method, 'federated_jwt');
    assert.deepEqual(view.federated_subject, { issuer: 'https://token.actions.githubusercontent.com', subject: 'repo:o/r:ref:refs/heads/main' });
    assert.deepEqual(view.required_claims, { repository: 'o/r' });
    const fs = { issuer: 'https://k8s.example', subject: 'system:serviceaccount:p:api' };
    const refused: Array<[unknown, RegExp]> = [
      [{ ...base, federated_subject: { ...fs, subject: '' } }, /subject/],
      [{ ...base, federated_subject: { ...fs, subject: 'a\u0000b' } }, /printable/],
      [{ ...base, federated_subject: { ...fs, extra: 1 } }, /federated_subject must be an object/],
      [{ ...base, federated_subject: 'https://k8s.example system:x' }, /federated_subject must be an object/],
      [{ ...base, federated_subject: fs, required_claims: { ref: 1 } }, /must be a string/],
      [{ ...base, federated_subject: fs, required_claims: ['x'] }, /required_claims must be an object/],
      [{ ...base, federated_subject: fs, required_claims: { aud: 'x' } }, /checked by Sigil itself/],
      [{ ...base, federated_subject: fs, required_claims: { 'a b': 'x' } }, /claim name/],
      [{ ...base, federated_subject: fs, required_claims: { x: 'y'.repeat(501) } }, /at most 500/],
      [{ ...base, federated_subject: fs, required_claims: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`c${i}`, 'v'])) }, /at most 16/],
      [{ ...base, spiffe_id: 'spiffe://e.org/a', required_claims: { x: 'y' } }, /federated_subject only/],
    ];
    for (const [body, message] of refused) assert.throws(() => parseNewClient(body, ISSUER), message, JSON.stringify(body));
  });

  it('TLS subject DN and SANs, one per client, in one spelling', () => {
    assert.deepEqual(parseNewClient({ ...base, tls_client_auth_subject_dn: 'CN=api,O=Example' }, ISSUER).workload, { kind: 'tls', subjectDn: 'CN=api,O=Example' });
    assert.deepEqual(parseNewClient({ ...base, tls_client_auth_san_dns: 'API.Example.org' }, ISSUER).workload, { kind: 'tls', sanDns: 'api.example.org' });
    assert.deepEqual(parseNewClient({ ...base, tls_client_auth_san_ip: '2001:db8:0:0::1' }, ISSUER).workload, { kind: 'tls', sanIp: '2001:db8::1' });
    assert.deepEqual(parseNewClient({ ...base, tls_client_auth_san_uri: 'spiffe://e.org/x' }, ISSUER).workload, { kind: 'tls', sanUri: 'spiffe://e.org/x' });
    assert.deepEqual(parseNewClient({ ...base, tls_client_auth_san_email: 'ops@example.org' }, ISSUER).workload, { kind: 'tls', sanEmail: 'ops@example.org' });
    const view = clientView({ ...parseNewClient({ ...base, tls_client_auth_san_dns: 'a.example' }, ISSUER), status: 'active', createdAt: new Date(0), updatedAt: new Date(0) });
    assert.equal(view.token_endpoint_auth_method, 'tls_client_auth');
    assert.equal(view.tls_client_auth_san_dns, 'a.example');
    for (const [member, value] of [['tls_client_auth_san_dns', 'a b'], ['tls_client_auth_san_dns', 'a..b'], ['tls_client_auth_san_ip', '1.2.3'], ['tls_client_auth_san_email', 'nobody'],
      ['tls_client_auth_san_uri', 'not a uri'], ['tls_client_auth_subject_dn', 'CN=a\nO=b'], ['tls_client_auth_subject_dn', ''],
      // printable, but no RFC 4514 DN: it could never match a certificate
      ['tls_client_auth_subject_dn', 'api.example.org'], ['tls_client_auth_subject_dn', 'XYZ=api']] as const) {
      assert.throws(() => parseNewClient({ ...base, [member]: value }, ISSUER), ClientInputError, `${member}=${value}`);
    }
  });

  it('self-signed certificates are stored as their x5t#S256 thumbprints; keys and garbage are refused', () => {
    const c = parseNewClient({ ...base, self_signed_certificates: [certPem, certPem] }, ISSUER);
    const expected = createHash('sha256').update(new X509Certificate(certPem).raw).digest('base64url');
    assert.deepEqual(c.workload, { kind: 'self-signed-tls', thumbprints: [expected] });
    const key = readFileSync(path.join(tmp, 'k.pem'), 'utf8');
    assert.throws(() => parseNewClient({ ...base, self_signed_certificates: [`${certPem}\n${key}`] }, ISSUER), /private key/);
    assert.throws(() => parseNewClient({ ...base, self_signed_certificates: [`${certPem}${certPem}`] }, ISSUER), /several certificates/);
    assert.throws(() => parseNewClient({ ...base, self_signed_certificates: ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----'] }, ISSUER), /not a readable/);
    assert.throws(() => parseNewClient({ ...base, self_signed_certificates: [] }, ISSUER), /1 to 10/);
    assert.throws(() => parseNewClient({ ...base, self_signed_certificates: Array(11).fill(certPem) }, ISSUER), /1 to 10/);
  });

  it('token_binding mtls: only for certificate-capable clients, and DPoP then optional', () => {
    const c = parseNewClient({ ...base, tls_client_auth_san_dns: 'a.example', token_binding: 'mtls' }, ISSUER);
    assert.equal(c.tokenBinding, 'mtls');
    assert.equal(c.dpopRequired, false);
    assert.equal(parseNewClient({ ...base, spiffe_id: 'spiffe://e.org/a', token_binding: 'mtls' }, ISSUER).tokenBinding, 'mtls');
    assert.throws(() => parseNewClient({ ...base, tls_client_auth_san_dns: 'a.example', token_binding: 'mtls', dpop: 'required' }, ISSUER), /cannot also be "required"/);
    assert.throws(() => parseNewClient({ ...base, jwks_uri: 'https://e.org/jwks', token_binding: 'mtls' }, ISSUER), /certificate/);
    assert.throws(() => parseNewClient({ ...base, federated_subject: { issuer: 'https://k.example', subject: 's' }, token_binding: 'mtls' }, ISSUER), /certificate/);
    assert.throws(() => parseNewClient({ ...base, spiffe_id: 'spiffe://e.org/a', token_binding: 'bearer' }, ISSUER), /"dpop" or "mtls"/);
    assert.throws(() => parseWorkloadBinding({ spiffe_id: 'spiffe://e.org/a', token_binding: 'MTLS' }), WorkloadInputError);
  });

  it('key-registered clients are unchanged: private_key_jwt, token_binding dpop', () => {
    const c = parseNewClient({ ...base, jwks_uri: 'https://e.org/jwks' }, ISSUER);
    assert.equal(c.workload, undefined);
    const view = clientView({ ...c, status: 'active', createdAt: new Date(0), updatedAt: new Date(0) });
    assert.equal(view.token_endpoint_auth_method, 'private_key_jwt');
    assert.equal((view as { jwks_uri?: string }).jwks_uri, 'https://e.org/jwks');
    assert.equal(view.token_binding, 'dpop');
  });
});
