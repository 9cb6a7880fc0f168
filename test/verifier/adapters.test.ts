// The adapters of sigil/verifier: each hands the framework's request to verify() as the public URL
// and headers, and answers a refusal with its status, WWW-Authenticate, DPoP-Nonce and a JSON body.
// verify() is a stand-in here (the checks themselves are tested against a real server).
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  fromNodeRequest, expressVerifier, fastifyVerifier, koaVerifier, verifyFetchRequest, verifyNodeRequest, VerifierError, type AccessTokenClaims, type RequestLike, type Verifier,
} from '../../src/verifier/index.js';

const CHALLENGE = 'DPoP error="use_dpop_nonce", error_description="a nonce is required in the DPoP proof", algs="ES256"';
const seen: RequestLike[] = [];
const claims = { sub: 's', client_id: 'c', jti: 'j' } as AccessTokenClaims;
/** accepts `DPoP good`, refuses anything else with use_dpop_nonce */
const stub = Object.assign(async (req: RequestLike | Request) => {
  const auth = req.headers instanceof Headers ? req.headers.get('authorization') : (req.headers as Record<string, string>).authorization;
  seen.push({ method: req.method, url: req.url, headers: req.headers });
  if (auth === 'DPoP good') return claims;
  throw new VerifierError(401, 'use_dpop_nonce', 'a nonce is required in the DPoP proof', CHALLENGE, { dpopNonce: 'n-1' });
}, { nextNonce: () => undefined, close: async () => {}, ready: async () => {}, stats: { jwksFetches: 0, statusListFetches: 0, statusStreamReady: false } }) as unknown as Verifier;

function assertRefusalHeaders(status: number, headers: Headers, body: unknown): void {
  assert.equal(status, 401);
  assert.equal(headers.get('www-authenticate'), CHALLENGE);
  assert.equal(headers.get('dpop-nonce'), 'n-1');
  assert.deepEqual(body, { error: 'use_dpop_nonce', error_description: 'a nonce is required in the DPoP proof' });
}

describe('sigil/verifier adapters', () => {
  let server: Server;
  let base: string;
  let handler: (req: IncomingMessage, res: ServerResponse) => void = () => {};

  before(async () => {
    server = createServer((req, res) => handler(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const call = async (auth: string) => {
    const res = await fetch(`${base}/orders/1?x=2`, { headers: { authorization: auth } });
    return { status: res.status, headers: res.headers, body: (await res.json()) as unknown };
  };

  it('the public URL: from baseUrl, or from forwarded headers only when a trusted proxy sent them', () => {
    const req = (peer: string, headers: Record<string, string> = {}) =>
      ({ method: 'POST', url: '/orders/1?x=2', headers: { host: '10.0.0.5:8080', ...headers }, socket: { remoteAddress: peer } }) as unknown as IncomingMessage;
    const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' };
    const proxies = ['127.0.0.0/8', '::1'];
    assert.equal(fromNodeRequest(req('127.0.0.1', forwarded), { trustedProxies: proxies }).url, 'https://api.example.com/orders/1?x=2');
    assert.equal(fromNodeRequest(req('::ffff:127.0.0.9', forwarded), { trustedProxies: proxies }).url, 'https://api.example.com/orders/1?x=2');
    assert.equal(fromNodeRequest(req('::1', forwarded), { trustedProxies: proxies }).url, 'https://api.example.com/orders/1?x=2');
    // from anyone else the headers are ignored: the configured base, or the path for the verifier's
    assert.equal(fromNodeRequest(req('10.1.2.3', forwarded), { trustedProxies: proxies }).url, '/orders/1?x=2');
    assert.equal(fromNodeRequest(req('10.1.2.3', forwarded), { trustedProxies: proxies, baseUrl: 'https://orders.example.com' }).url, 'https://orders.example.com/orders/1?x=2');
    assert.equal(fromNodeRequest(req('127.0.0.1', forwarded)).url, '/orders/1?x=2', 'no proxy is trusted by default');
    assert.equal(fromNodeRequest(req('127.0.0.1', forwarded), 'https://orders.example.com').url, 'https://orders.example.com/orders/1?x=2');
  });

  it('Node http: claims, or the refusal answered', async () => {
    handler = (req, res) => void verifyNodeRequest(stub, req, res).then((c) => c && res.end(JSON.stringify(c)));
    assert.deepEqual((await call('DPoP good')).body, claims);
    assert.equal(seen.at(-1)!.url, '/orders/1?x=2', 'the path, for the verifier to resolve against its baseUrl');
    const refused = await call('DPoP bad');
    assertRefusalHeaders(refused.status, refused.headers, refused.body);
  });

  it('Express: claims in res.locals, next() called; a refusal answered without next()', async () => {
    const mw = expressVerifier(stub);
    let nexts = 0;
    handler = (req, res) => mw(req, res as ServerResponse & { locals?: Record<string, unknown> }, () => {
      nexts++;
      res.end(JSON.stringify((res as unknown as { locals: Record<string, unknown> }).locals.sigil));
    });
    assert.deepEqual((await call('DPoP good')).body, claims);
    const refused = await call('DPoP bad');
    assertRefusalHeaders(refused.status, refused.headers, refused.body);
    assert.equal(nexts, 1);
  });

  it('Koa: claims in ctx.state.sigil; a refusal set on ctx', async () => {
    const mw = koaVerifier(stub);
    const ctx = (auth: string) => {
      const headers: Record<string, string> = {};
      return { req: { method: 'GET', url: '/orders/1', headers: { authorization: auth } } as unknown as IncomingMessage, state: {} as Record<string, unknown>, status: 404, body: undefined as unknown, headers, set(h: Record<string, string>) { Object.assign(headers, h); } };
    };
    const ok = ctx('DPoP good');
    let nexts = 0;
    await mw(ok, async () => void nexts++);
    assert.equal(ok.state.sigil, claims);
    const bad = ctx('DPoP bad');
    await mw(bad, async () => void nexts++);
    assert.equal(nexts, 1);
    assertRefusalHeaders(bad.status, new Headers(bad.headers), bad.body);
  });

  it('Fastify: claims on request.sigil; a refusal sent on the reply', async () => {
    const hook = fastifyVerifier(stub);
    const reply = () => {
      const r = { statusCode: 200, sent: undefined as unknown, h: {} as Record<string, string>, code(s: number) { r.statusCode = s; return r; }, headers(h: Record<string, string>) { Object.assign(r.h, h); return r; }, send(b: unknown) { r.sent = b; return r; } };
      return r;
    };
    const okRequest = { raw: { method: 'GET', url: '/orders/1', headers: { authorization: 'DPoP good' } } as unknown as IncomingMessage } as { raw: IncomingMessage; sigil?: AccessTokenClaims };
    await hook(okRequest, reply());
    assert.equal(okRequest.sigil, claims);
    const r = reply();
    await hook({ raw: { method: 'GET', url: '/orders/1', headers: { authorization: 'DPoP bad' } } as unknown as IncomingMessage }, r);
    assertRefusalHeaders(r.statusCode, new Headers(r.h), r.sent);
  });

  it('Fetch API: claims, or the Response to answer with', async () => {
    const ok = await verifyFetchRequest(stub, new Request('https://api.example.com/orders/1', { headers: { authorization: 'DPoP good' } }));
    assert.deepEqual(ok, { claims });
    const bad = await verifyFetchRequest(stub, new Request('https://api.example.com/orders/1', { headers: { authorization: 'DPoP bad' } }));
    assert.ok('response' in bad);
    assertRefusalHeaders(bad.response.status, bad.response.headers, await bad.response.json());
  });
});
