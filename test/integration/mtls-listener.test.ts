// A Sigil process that terminates TLS itself (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CLIENT_CA_FILE), and
// one behind a TLS-terminating proxy (TLS_CLIENT_CERT_HEADER, TLS_TRUSTED_PROXIES): what reaches it,
// what it announces, what it refuses.
import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { startServer, type ServerProcess } from '../support/server.js';
import { bundleFile, mintCa, mintLeaf } from '../support/x509.js';

interface Seen { status: number; body: Record<string, unknown> }

function answer(res: IncomingMessage): Promise<Seen> {
  return new Promise((resolve) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => (text += d));
    res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : {} }));
  });
}

const FORM = 'grant_type=client_credentials&client_id=nobody';

describe('Sigil terminating TLS', () => {
  const serverCa = mintCa('/CN=Server CA');
  const serverCert = mintLeaf(serverCa, { subject: '/CN=sigil', san: ['IP:127.0.0.1', 'DNS:localhost'], keyUsage: 'critical,digitalSignature' });
  const clientCa = mintCa('/CN=Client CA');
  const clientCert = mintLeaf(clientCa, { subject: '/CN=worker' });
  let server: ServerProcess;

  before(async () => {
    server = await startServer({
      issuer: 'https://sigil-mtls.test',
      env: { TLS_CERT_FILE: serverCert.certFile, TLS_KEY_FILE: serverCert.keyFile, TLS_CLIENT_CA_FILE: bundleFile(clientCa) },
    });
  });
  after(async () => server?.stop());

  const call = (path: string, opts: { method?: string; body?: string; client?: typeof clientCert; maxVersion?: 'TLSv1.2' } = {}) => new Promise<Seen>((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port: server.port, path, method: opts.method ?? 'GET', ca: serverCa.cert, agent: false,
      ...(opts.client ? { cert: opts.client.cert, key: opts.client.key } : {}), ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
      headers: opts.body ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(opts.body)) } : {},
    }, (res) => void answer(res).then(resolve));
    req.on('error', reject);
    req.end(opts.body);
  });

  it('serves https with its certificate, with or without a client certificate', async () => {
    assert.equal((await call('/health')).status, 200);
    assert.equal((await call('/health', { client: clientCert })).status, 200);
  });

  it('announces RFC 8705 at an https issuer, without aliases (mTLS is served at the issuer itself)', async () => {
    const { status, body } = await call('/.well-known/oauth-authorization-server');
    assert.equal(status, 200);
    assert.equal(body.issuer, 'https://sigil-mtls.test');
    assert.equal(body.tls_client_certificate_bound_access_tokens, true);
    assert.ok((body.token_endpoint_auth_methods_supported as string[]).includes('tls_client_auth'));
    assert.ok((body.token_endpoint_auth_methods_supported as string[]).includes('self_signed_tls_client_auth'));
    assert.equal(body.mtls_endpoint_aliases, undefined);
  });

  it('takes a /token request with a client certificate to client authentication (RFC 6749 error, not a 500 or a reset)', async () => {
    const { status, body } = await call('/token', { method: 'POST', body: FORM, client: clientCert });
    assert.ok(status === 400 || status === 401, `status ${status}`);
    assert.equal(typeof body.error, 'string');
  });

  it('refuses TLS 1.2 and plain HTTP', async () => {
    await assert.rejects(call('/health', { maxVersion: 'TLSv1.2' }));
    const plain = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port: server.port, path: '/health', agent: false }, (res) => resolve(`status ${res.statusCode}`));
      req.on('error', (err) => resolve(`error ${err.message}`));
      req.end();
    });
    assert.doesNotMatch(plain, /status 200/);
  });
});

describe('Sigil behind a TLS-terminating proxy (TLS_CLIENT_CERT_HEADER)', () => {
  const ca = mintCa('/CN=Proxy Client CA');
  const clientCert = mintLeaf(ca, { subject: '/CN=worker' });
  let server: ServerProcess;

  before(async () => {
    server = await startServer({
      issuer: 'https://sigil-proxied.test',
      env: { TLS_CLIENT_CERT_HEADER: 'X-Client-Cert', TLS_TRUSTED_PROXIES: '127.0.0.1/32', MTLS_BASE_URL: 'https://mtls.sigil-proxied.test' },
    });
  });
  after(async () => server?.stop());

  const call = (path: string, opts: { localAddress?: string; header?: string; body?: string } = {}) => new Promise<Seen>((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1', port: server.port, path, method: opts.body ? 'POST' : 'GET', agent: false, localAddress: opts.localAddress ?? '127.0.0.1',
      headers: {
        ...(opts.header !== undefined ? { 'x-client-cert': opts.header } : {}),
        ...(opts.body ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(opts.body)) } : {}),
      },
    }, (res) => void answer(res).then(resolve));
    req.on('error', reject);
    req.end(opts.body);
  });

  it('refuses the header at /token from an address that is not a trusted proxy (127.0.0.2)', async () => {
    const { status, body } = await call('/token', { localAddress: '127.0.0.2', header: encodeURIComponent(clientCert.cert), body: FORM });
    assert.equal(status, 400);
    assert.equal(body.error, 'invalid_request');
    assert.match(String(body.error_description), /accepted only from a configured proxy \(TLS_TRUSTED_PROXIES\)/);
  });

  it('takes it from the trusted proxy on to client authentication, and refuses a malformed one with 400', async () => {
    const ok = await call('/token', { header: encodeURIComponent(clientCert.cert), body: FORM });
    assert.ok(ok.status === 400 || ok.status === 401, `status ${ok.status}`);
    assert.doesNotMatch(String(ok.body.error_description), /x-client-cert/i);
    const bad = await call('/token', { header: 'not-a-cert!', body: FORM });
    assert.equal(bad.status, 400);
    assert.match(String(bad.body.error_description), /x-client-cert header is neither PEM nor base64 DER/);
  });

  it('reads the header only where clients authenticate: other endpoints ignore it', async () => {
    assert.equal((await call('/health', { localAddress: '127.0.0.2', header: 'anything' })).status, 200);
  });

  it('announces the mTLS aliases at MTLS_BASE_URL', async () => {
    const { body } = await call('/.well-known/oauth-authorization-server');
    assert.equal(body.tls_client_certificate_bound_access_tokens, true);
    assert.deepEqual(body.mtls_endpoint_aliases, {
      token_endpoint: 'https://mtls.sigil-proxied.test/token',
      revocation_endpoint: 'https://mtls.sigil-proxied.test/revoke',
      introspection_endpoint: 'https://mtls.sigil-proxied.test/introspect',
    });
  });
});
