// The certificate authenticator (src/workload/certificate-auth.ts) against certificates minted with
// openssl: tls_client_auth (chain to the client CAs, DN and SAN matching), self-signed certificates,
// and the X.509-SVID rules, with an in-memory WorkloadTrust.
import assert from 'node:assert/strict';
import type { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { writeFileSync } from 'node:fs';
import { certificateAuthenticator, loadClientCas } from '../../src/workload/certificate-auth.js';
import type { PresentedCertificate, TrustAnswer, WorkloadBinding, WorkloadVerdict } from '../../src/workload/types.js';
import { sameDn, subjectDnProblem } from '../../src/workload/x509.js';
import { bundleFile, mintCa, mintIntermediate, mintLeaf, type Minted } from '../support/x509.js';

const presented = (leaf: Minted, chain: Minted[] = [], via: 'tls' | 'proxy' = 'tls'): PresentedCertificate =>
  ({ certificate: leaf.x509, chain: chain.map((c) => c.x509), thumbprint: leaf.thumbprint, via });

/** an in-memory WorkloadTrust: trust domain → its X.509 authorities */
function trustOf(domains: Record<string, Minted[]>) {
  return {
    async x509Authorities(td: string): Promise<TrustAnswer<X509Certificate[]>> {
      const cas = domains[td];
      return cas ? { ok: true, value: cas.map((c) => c.x509) } : { ok: false, problem: `trust domain ${td} is not configured` };
    },
  };
}

const ok = (r: WorkloadVerdict | { problem: string }): WorkloadVerdict => {
  assert.ok(!('problem' in r), `refused: ${'problem' in r ? r.problem : ''}`);
  return r as WorkloadVerdict;
};
const refused = (r: WorkloadVerdict | { problem: string }, pattern: RegExp) => {
  assert.ok('problem' in r, `accepted as ${JSON.stringify((r as WorkloadVerdict).identity)}`);
  assert.match(r.problem, pattern);
};

describe('tls_client_auth (RFC 8705 §2.1)', () => {
  const root = mintCa('/CN=Client Root');
  const inter = mintIntermediate(root, '/CN=Client Issuing');
  const otherRoot = mintCa('/CN=Someone Else');
  const leaf = mintLeaf(inter, {
    subject: '/C=DE/O=Example, Inc./OU=Payments/CN=pay-worker',
    san: ['DNS:pay.example.com', 'URI:https://pay.example.com/worker', 'IP:10.1.2.3', 'IP:2001:db8::7', 'email:ops@Example.com'],
  });
  const auth = certificateAuthenticator({ clientCas: [root.x509], trust: trustOf({}) });
  const as = (workload: WorkloadBinding, p = presented(leaf, [inter])) => auth.authenticate({ clientId: 'c1', workload }, p);

  it('matches the subject DN as RFC 4514 strings, normalised (case, spaces, escapes)', async () => {
    const v = ok(await as({ kind: 'tls', subjectDn: 'CN=pay-worker,OU=Payments,O=Example\\, Inc.,C=DE' }));
    assert.equal(v.method, 'tls_client_auth');
    assert.equal(v.clientId, 'c1');
    assert.equal(v.identity, 'CN=pay-worker,OU=Payments,O=Example\\, Inc.,C=DE');
    assert.equal(v.certificate?.thumbprint, leaf.thumbprint);
    ok(await as({ kind: 'tls', subjectDn: 'cn=PAY-WORKER, ou=payments,  o=Example\\2C Inc., c=de' }));
    ok(await as({ kind: 'tls', subjectDn: '2.5.4.3=pay-worker,OU=Payments,O=Example\\, Inc.,C=DE' }));
  });

  it('refuses another DN, the same RDNs in the other order, and a prefix of the DN', async () => {
    refused(await as({ kind: 'tls', subjectDn: 'CN=pay-worker2,OU=Payments,O=Example\\, Inc.,C=DE' }), /subject DN/);
    refused(await as({ kind: 'tls', subjectDn: 'C=DE,O=Example\\, Inc.,OU=Payments,CN=pay-worker' }), /subject DN/);
    refused(await as({ kind: 'tls', subjectDn: 'CN=pay-worker,OU=Payments' }), /subject DN/);
  });

  it('matches one SAN value of each type, and refuses a value the certificate does not carry', async () => {
    assert.equal(ok(await as({ kind: 'tls', sanDns: 'PAY.example.com' })).identity, 'dns:PAY.example.com');
    ok(await as({ kind: 'tls', sanUri: 'https://pay.example.com/worker' }));
    ok(await as({ kind: 'tls', sanIp: '10.1.2.3' }));
    ok(await as({ kind: 'tls', sanIp: '2001:0db8:0:0::7' }));
    ok(await as({ kind: 'tls', sanEmail: 'ops@example.COM' }));
    refused(await as({ kind: 'tls', sanDns: 'other.example.com' }), /DNS SAN/);
    refused(await as({ kind: 'tls', sanDns: '*.example.com' }), /DNS SAN/);
    refused(await as({ kind: 'tls', sanUri: 'https://pay.example.com/WORKER' }), /URI SAN/);
    refused(await as({ kind: 'tls', sanIp: '10.1.2.4' }), /IP address SAN/);
    refused(await as({ kind: 'tls', sanEmail: 'OPS@example.com' }), /email SAN/);
    // a DNS name is not an IP SAN, nor the DN's CN a DNS SAN
    refused(await as({ kind: 'tls', sanDns: 'pay-worker' }), /DNS SAN/);
  });

  it('refuses a certificate not chaining to TLS_CLIENT_CA_FILE (another CA, a missing intermediate, a self-signed copy)', async () => {
    const foreign = mintLeaf(otherRoot, { subject: '/CN=pay-worker', san: ['DNS:pay.example.com'] });
    refused(await as({ kind: 'tls', sanDns: 'pay.example.com' }, presented(foreign)), /does not chain/);
    refused(await as({ kind: 'tls', sanDns: 'pay.example.com' }, presented(leaf, [])), /does not chain/);
    const selfSigned = mintLeaf(undefined, { subject: '/C=DE/O=Example, Inc./OU=Payments/CN=pay-worker', san: ['DNS:pay.example.com'] });
    refused(await as({ kind: 'tls', sanDns: 'pay.example.com' }, presented(selfSigned)), /does not chain/);
    // an intermediate that is not a CA certificate does not extend a chain
    const notCa = mintLeaf(root, { subject: '/CN=Client Issuing', basicConstraints: 'critical,CA:FALSE', keyUsage: 'critical,digitalSignature,keyCertSign' });
    const underNotCa = mintLeaf(notCa, { san: ['DNS:pay.example.com'] });
    refused(await as({ kind: 'tls', sanDns: 'pay.example.com' }, presented(underNotCa, [notCa])), /does not chain/);
  });

  it('accepts a leaf issued by the root directly, and refuses expired and not-yet-valid certificates', async () => {
    const direct = mintLeaf(root, { san: ['DNS:direct.example.com'] });
    ok(await as({ kind: 'tls', sanDns: 'direct.example.com' }, presented(direct)));
    const expired = mintLeaf(root, { san: ['DNS:direct.example.com'], notBeforeDays: -10, notAfterDays: -1 });
    refused(await as({ kind: 'tls', sanDns: 'direct.example.com' }, presented(expired)), /expired/);
    const future = mintLeaf(root, { san: ['DNS:direct.example.com'], notBeforeDays: 1, notAfterDays: 10 });
    refused(await as({ kind: 'tls', sanDns: 'direct.example.com' }, presented(future)), /not valid yet/);
    const expiredInter = mintLeaf(root, { subject: '/CN=Old Issuing', basicConstraints: 'critical,CA:TRUE', keyUsage: 'critical,keyCertSign', notBeforeDays: -10, notAfterDays: -1 });
    const underExpired = mintLeaf(expiredInter, { san: ['DNS:direct.example.com'] });
    refused(await as({ kind: 'tls', sanDns: 'direct.example.com' }, presented(underExpired, [expiredInter])), /intermediate CA certificate of the client certificate has expired/);
  });

  it('refuses a leaf whose only CA certificate has expired, and accepts it once the renewed CA certificate (same key) is trusted too', async () => {
    const oldRoot = mintCa('/CN=Renewed Root', { notBeforeDays: -400, notAfterDays: -1 });
    const renewed = mintCa('/CN=Renewed Root', { keyOf: oldRoot });
    const issued = mintLeaf(renewed, { san: ['DNS:renewed.example.com'] });
    const binding = { kind: 'tls', sanDns: 'renewed.example.com' } as const;
    const onlyOld = certificateAuthenticator({ clientCas: [oldRoot.x509], trust: trustOf({}) });
    refused(await onlyOld.authenticate({ clientId: 'c1', workload: binding }, presented(issued)), /CA certificate the client certificate chains to has expired/);
    const both = certificateAuthenticator({ clientCas: [oldRoot.x509, renewed.x509], trust: trustOf({}) });
    ok(await both.authenticate({ clientId: 'c1', workload: binding }, presented(issued)));
  });

  it('refuses the CA certificate itself as a client certificate', async () => {
    refused(await as({ kind: 'tls', subjectDn: 'CN=Client Root' }, presented(root)), /CA certificate/);
  });

  it('refuses everything when no client CA is configured', async () => {
    const none = certificateAuthenticator({ clientCas: [], trust: trustOf({}) });
    refused(await none.authenticate({ clientId: 'c1', workload: { kind: 'tls', sanDns: 'pay.example.com' } }, presented(leaf, [inter])), /TLS_CLIENT_CA_FILE/);
  });
});

describe('self_signed_tls_client_auth (RFC 8705 §2.2)', () => {
  const cert = mintLeaf(undefined, { subject: '/CN=self' });
  const other = mintLeaf(undefined, { subject: '/CN=self' });
  const auth = certificateAuthenticator({ clientCas: [], trust: trustOf({}) });

  it('accepts a registered certificate and refuses an unregistered one with the same subject', async () => {
    const v = ok(await auth.authenticate({ clientId: 'c2', workload: { kind: 'self-signed-tls', thumbprints: ['x', cert.thumbprint] } }, presented(cert)));
    assert.equal(v.method, 'self_signed_tls_client_auth');
    assert.equal(v.identity, `x5t#S256:${cert.thumbprint}`);
    refused(await auth.authenticate({ clientId: 'c2', workload: { kind: 'self-signed-tls', thumbprints: [cert.thumbprint] } }, presented(other)), /not one registered/);
  });

  it('refuses a registered certificate past its dates', async () => {
    const expired = mintLeaf(undefined, { notBeforeDays: -5, notAfterDays: -1 });
    refused(await auth.authenticate({ clientId: 'c2', workload: { kind: 'self-signed-tls', thumbprints: [expired.thumbprint] } }, presented(expired)), /expired/);
  });

  it('does not authenticate clients of other kinds, or without a workload binding', async () => {
    refused(await auth.authenticate({ clientId: 'c2', workload: { kind: 'federated', issuer: 'https://i', subject: 's', claims: {} } }, presented(cert)), /does not authenticate with a client certificate/);
    refused(await auth.authenticate({ clientId: 'c2' }, presented(cert)), /does not authenticate with a client certificate/);
  });
});

describe('X.509-SVID (SPIFFE X509-SVID spec, draft-ietf-oauth-spiffe-client-auth)', () => {
  const bundle = mintCa('/O=SPIFFE/CN=example.org bundle');
  const inter = mintIntermediate(bundle, '/O=SPIFFE/CN=example.org issuing');
  const otherBundle = mintCa('/O=SPIFFE/CN=other.org bundle');
  const svid = (id: string | string[], opts: Parameters<typeof mintLeaf>[1] = {}, issuer: Minted = inter) =>
    mintLeaf(issuer, { subject: '/O=SPIFFE', san: (Array.isArray(id) ? id : [id]).map((u) => `URI:${u}`), ...opts });
  const auth = certificateAuthenticator({ clientCas: [], trust: trustOf({ 'example.org': [bundle], 'other.org': [otherBundle] }) });
  const as = (cert: Minted, chain: Minted[] = [inter], spiffeId = 'spiffe://example.org/ns/pay/*') =>
    auth.authenticate({ clientId: 'c3', workload: { kind: 'spiffe', spiffeId } }, presented(cert, chain));

  it('accepts an SVID whose ID the pattern matches, chaining through the presented intermediate', async () => {
    const v = ok(await as(svid('spiffe://example.org/ns/pay/worker')));
    assert.equal(v.method, 'spiffe_x509');
    assert.equal(v.identity, 'spiffe://example.org/ns/pay/worker');
    ok(await as(svid('spiffe://example.org/ns/pay/worker'), [inter], 'spiffe://example.org/ns/pay/worker'));
  });

  it('refuses an ID the pattern does not match, or of another trust domain', async () => {
    refused(await as(svid('spiffe://example.org/ns/payments/worker')), /not the one this client is bound to/);
    refused(await as(svid('spiffe://other.org/ns/pay/worker', {}, otherBundle), []), /not the one this client is bound to/);
  });

  it('refuses two URI SANs, none, and a URI SAN that is not a SPIFFE ID', async () => {
    refused(await as(svid(['spiffe://example.org/ns/pay/worker', 'spiffe://example.org/ns/pay/other'])), /exactly one URI SAN, this certificate has 2/);
    refused(await as(mintLeaf(inter, { san: ['DNS:worker.example.org'] })), /exactly one URI SAN, this certificate has 0/);
    refused(await as(svid('https://example.org/ns/pay/worker')), /not a SPIFFE ID/);
  });

  it('refuses a CA certificate as the client certificate', async () => {
    const ca = svid('spiffe://example.org/ns/pay/worker', { basicConstraints: 'critical,CA:TRUE', keyUsage: 'critical,digitalSignature,keyCertSign' });
    refused(await as(ca), /must be a leaf/);
  });

  it('refuses keyUsage without digitalSignature, with keyCertSign or cRLSign, or absent', async () => {
    refused(await as(svid('spiffe://example.org/ns/pay/worker', { keyUsage: 'critical,keyEncipherment' })), /digitalSignature/);
    refused(await as(svid('spiffe://example.org/ns/pay/worker', { keyUsage: 'critical,digitalSignature,keyCertSign' })), /keyCertSign or cRLSign/);
    refused(await as(svid('spiffe://example.org/ns/pay/worker', { keyUsage: 'critical,digitalSignature,cRLSign' })), /keyCertSign or cRLSign/);
    refused(await as(svid('spiffe://example.org/ns/pay/worker', { keyUsage: null })), /keyUsage extension/);
  });

  it('refuses an SVID not chaining to its trust domain\'s authorities (another domain\'s CA, the system store never)', async () => {
    const foreign = svid('spiffe://example.org/ns/pay/worker', {}, otherBundle);
    refused(await as(foreign, []), /does not chain to the X\.509 authorities of trust domain example\.org/);
    // without the intermediate the chain is incomplete
    refused(await as(svid('spiffe://example.org/ns/pay/worker'), []), /does not chain/);
  });

  it('refuses an expired SVID, and one whose trust domain is not configured', async () => {
    refused(await as(svid('spiffe://example.org/ns/pay/worker', { notBeforeDays: -3, notAfterDays: -1 })), /expired/);
    const unknown = certificateAuthenticator({ clientCas: [], trust: trustOf({}) });
    refused(await unknown.authenticate({ clientId: 'c3', workload: { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/pay/*' } },
      presented(svid('spiffe://example.org/ns/pay/worker'), [inter])), /trust domain example\.org is not configured/);
  });

  it('refuses a not-yet-valid SVID, and one whose issuing CA has left the bundle (the trust answer is read on every request)', async () => {
    refused(await as(svid('spiffe://example.org/ns/pay/worker', { notBeforeDays: 1, notAfterDays: 5 })), /not valid yet/);
    const domains: Record<string, Minted[]> = { 'example.org': [bundle] };
    const live = certificateAuthenticator({ clientCas: [], trust: trustOf(domains) });
    const cert = svid('spiffe://example.org/ns/pay/worker');
    const authenticate = () => live.authenticate({ clientId: 'c3', workload: { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/pay/*' } }, presented(cert, [inter]));
    ok(await authenticate());
    domains['example.org'] = [mintCa('/O=SPIFFE/CN=example.org rotated bundle')];
    refused(await authenticate(), /does not chain to the X\.509 authorities of trust domain example\.org/);
  });

  it('uses the injected clock for validity', async () => {
    const cert = svid('spiffe://example.org/ns/pay/worker');
    const later = certificateAuthenticator({ clientCas: [], trust: trustOf({ 'example.org': [bundle] }), now: () => new Date(Date.now() + 60 * 86_400_000) });
    refused(await later.authenticate({ clientId: 'c3', workload: { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/pay/*' } }, presented(cert, [inter])), /expired/);
  });
});

describe('subject DNs', () => {
  it('says why a DN cannot be used', () => {
    assert.equal(subjectDnProblem('CN=a,O=b'), undefined);
    assert.match(subjectDnProblem('')!, /empty/);
    assert.match(subjectDnProblem('CN=a,bogus')!, /TYPE=value/);
    assert.match(subjectDnProblem('XYZ=a')!, /unknown attribute type/);
    assert.match(subjectDnProblem('CN=a\\q')!, /backslash/);
    assert.match(subjectDnProblem(42)!, /string/);
  });

  it('compares multi-valued RDNs regardless of their order', () => {
    assert.ok(sameDn('CN=a+UID=1,O=b', 'UID=1+cn=A,O=b'));
    assert.ok(!sameDn('CN=a+UID=1,O=b', 'CN=a,UID=1,O=b'));
  });
});

describe('TLS_CLIENT_CA_FILE', () => {
  it('reads every CA certificate of a bundle, ignoring text between the blocks', async () => {
    const a = mintCa('/CN=A');
    const b = mintCa('/CN=B');
    const file = bundleFile(a, b);
    writeFileSync(file, `# client CAs\nsubject=CN=A\n${a.cert}\nBundle\n${b.cert}`);
    const cas = await loadClientCas(file);
    assert.deepEqual(cas.map((c) => c.fingerprint256), [a.x509.fingerprint256, b.x509.fingerprint256]);
    assert.deepEqual(await loadClientCas(undefined), []);
  });

  it('refuses a missing file, a file without certificates, and a leaf certificate among the CAs', async () => {
    await assert.rejects(loadClientCas('/nonexistent/clients.pem'), /TLS_CLIENT_CA_FILE \/nonexistent\/clients.pem cannot be read \(ENOENT\)/);
    const empty = bundleFile();
    await assert.rejects(loadClientCas(empty), /not a PEM file of certificates/);
    const ca = mintCa('/CN=C');
    await assert.rejects(loadClientCas(bundleFile(ca, mintLeaf(ca, { subject: '/CN=leaf' }))), /not a CA certificate \(CN=leaf\)/);
  });
});
