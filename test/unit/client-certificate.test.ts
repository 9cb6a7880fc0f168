// Where a request's client certificate comes from (src/workload/client-certificate.ts), over real
// sockets: Sigil's own TLS listener (src/server/http-listener.ts, TLS 1.3 only, certificate asked
// for, not required) and a trusted proxy's header, which from any other address is refused.
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import type { HttpLimits } from '../../src/config.js';
import { closeServer, createHttpServer, listen } from '../../src/server/http-listener.js';
import { certificatesFromText } from '../../src/verifier/certificate.js';
import { clientCertificate } from '../../src/workload/client-certificate.js';
import type { PresentedCertificate } from '../../src/workload/types.js';
import { mintCa, mintIntermediate, mintLeaf } from '../support/x509.js';

const LIMITS: HttpLimits = { headersTimeoutMs: 5000, requestTimeoutMs: 10_000, keepAliveTimeoutMs: 5000, maxConnections: 100 };

interface Seen { status: number; body: { thumbprint?: string; via?: string; chain?: number; error?: string; error_description?: string } }

/** an app that says which certificate the middleware found */
function echoApp(opts: Parameters<typeof clientCertificate>[0]) {
  const app = new Koa();
  app.use(clientCertificate(opts));
  app.use((ctx) => {
    const c = ctx.state.clientCertificate as PresentedCertificate | undefined;
    ctx.body = c ? { thumbprint: c.thumbprint, via: c.via, chain: c.chain.length } : {};
  });
  return app;
}

function answer(res: import('node:http').IncomingMessage): Promise<Seen> {
  return new Promise((resolve) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => (text += d));
    res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text || '{}') }));
  });
}

describe('client certificates over Sigil\'s own TLS listener', () => {
  const ca = mintCa('/CN=Clients Root');
  const inter = mintIntermediate(ca, '/CN=Clients Issuing');
  const leaf = mintLeaf(inter, { subject: '/CN=worker', san: ['DNS:worker.example'] });
  const serverCert = mintLeaf(ca, { subject: '/CN=localhost', san: ['IP:127.0.0.1'] });
  const server = createHttpServer(echoApp({ proxyHeader: undefined, trustedProxies: [] }).callback(), LIMITS, undefined, { cert: serverCert.cert, key: serverCert.key });
  let port: number;
  before(async () => (port = await listen(server, 0, '127.0.0.1')));
  after(() => closeServer(server));

  const call = (client?: { cert: string; key: string }, extra: Record<string, unknown> = {}) => new Promise<Seen>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/token', method: 'POST', ca: ca.cert, agent: false, ...client, ...extra }, (res) => void answer(res).then(resolve));
    req.on('error', reject);
    req.end();
  });

  it('reads the client certificate and the intermediates the client sent', async () => {
    const seen = await call({ cert: leaf.cert + inter.cert, key: leaf.key });
    assert.equal(seen.status, 200);
    assert.deepEqual(seen.body, { thumbprint: leaf.thumbprint, via: 'tls', chain: 1 });
  });

  it('serves a client without a certificate (private_key_jwt clients have none)', async () => {
    assert.deepEqual((await call()).body, {});
  });

  it('takes a certificate no CA vouches for (a self-signed one): judging it is certificate-auth\'s business', async () => {
    const selfSigned = mintLeaf(undefined, { subject: '/CN=self' });
    assert.deepEqual((await call({ cert: selfSigned.cert, key: selfSigned.key })).body, { thumbprint: selfSigned.thumbprint, via: 'tls', chain: 0 });
  });

  it('speaks TLS 1.3 only', async () => {
    await assert.rejects(call(undefined, { maxVersion: 'TLSv1.2' }), /protocol version|alert|wrong version|unsupported/i);
  });

  it('does not answer plain HTTP on the TLS port', async () => {
    const plain = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/health', agent: false }, (res) => resolve(`status ${res.statusCode}`));
      req.on('error', (err) => resolve(`error ${err.message}`));
      req.end();
    });
    assert.doesNotMatch(plain, /status 200/);
  });
});

describe('client certificates from a trusted proxy\'s header', () => {
  const ca = mintCa('/CN=Proxy Clients');
  const leaf = mintLeaf(ca, { subject: '/CN=behind-proxy' });
  const server = createHttpServer(echoApp({ proxyHeader: 'x-client-cert', trustedProxies: ['127.0.0.1/32'] }).callback(), LIMITS);
  let port: number;
  before(async () => (port = await listen(server, 0, '127.0.0.1')));
  after(() => closeServer(server));

  const call = (header: string | undefined, localAddress = '127.0.0.1') => new Promise<Seen>((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1', port, path: '/token', method: 'POST', localAddress, agent: false,
      headers: header === undefined ? {} : { 'x-client-cert': header },
    }, (res) => void answer(res).then(resolve));
    req.on('error', reject);
    req.end();
  });

  it('believes the header from a trusted address: URL-encoded PEM (nginx), plain PEM, base64 DER', async () => {
    const pemOnOneLine = leaf.cert.replace(/\n/g, ' ');
    for (const value of [encodeURIComponent(leaf.cert), pemOnOneLine, leaf.x509.raw.toString('base64')]) {
      assert.deepEqual((await call(value)).body, { thumbprint: leaf.thumbprint, via: 'proxy', chain: 0 }, value.slice(0, 30));
    }
  });

  it('refuses the header from any other address (127.0.0.2 while only 127.0.0.1/32 is trusted): 400 invalid_request', async () => {
    const seen = await call(encodeURIComponent(leaf.cert), '127.0.0.2');
    assert.equal(seen.status, 400);
    assert.equal(seen.body.error, 'invalid_request');
    assert.match(seen.body.error_description!, /accepted only from a configured proxy/);
    // without the header, that address is served as anyone else
    assert.deepEqual((await call(undefined, '127.0.0.2')).body, {});
    // an empty header (nginx sends none when there is no certificate; others send it empty) is no certificate
    assert.deepEqual((await call('', '127.0.0.2')).body, {});
  });

  it('refuses a malformed certificate from a trusted proxy with 400 invalid_request, never a 500', async () => {
    for (const value of ['garbage!', '-----BEGIN CERTIFICATE-----AAAA-----END CERTIFICATE-----', '%2D%2D%2D%2D%2DBEGIN%ZZ', Buffer.from('not DER').toString('base64'),
      `${leaf.cert.replace(/\n/g, ' ')} trailing`]) {
      const seen = await call(value);
      assert.equal(seen.status, 400, value);
      assert.equal(seen.body.error, 'invalid_request');
      assert.match(seen.body.error_description!, /x-client-cert header/);
    }
  });

  it('reads a chain in the header, leaf first, at most a few certificates', () => {
    const inter = mintIntermediate(ca);
    const [first, second] = certificatesFromText(encodeURIComponent(leaf.cert + inter.cert));
    assert.equal(first!.fingerprint256, leaf.x509.fingerprint256);
    assert.equal(second!.fingerprint256, inter.x509.fingerprint256);
    assert.throws(() => certificatesFromText(leaf.cert.repeat(9)), /more than 8/);
  });
});

