// The parts of verify-server that need no issuer: the config file read strictly, route matching
// after path normalisation, identity header values that cannot be injected.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayConfigError, isTrusted, parseGatewayConfig } from '../../src/gateway/config.js';
import { asciiJson, identityHeaders } from '../../src/gateway/identity-headers.js';
import { normalisePath, RouteTable } from '../../src/gateway/routes.js';
import type { AccessTokenClaims } from '../../src/verifier/index.js';

const route = { prefix: '/orders', audience: 'https://api.example.com/orders' };
const parse = (doc: unknown) => parseGatewayConfig(typeof doc === 'string' ? doc : JSON.stringify(doc));
const refused = (doc: unknown, message: RegExp) => assert.throws(() => parse(doc), (e: Error) => e instanceof GatewayConfigError && message.test(e.message), JSON.stringify(doc));

describe('verify-server config file', () => {
  it('accepts the contract example and fills the defaults', () => {
    const c = parse({ routes: [{ prefix: '/orders', audience: 'https://api.example.com/orders', scopes: ['orders:read'], methods: ['GET'] }], trusted_proxies: ['127.0.0.1/32'] });
    assert.equal(c.routes[0]!.prefix, '/orders');
    assert.deepEqual([...c.routes[0]!.methods!], ['GET']);
    const d = parse({ routes: [{ ...route, host: 'API.Example.com.', prefix: '/orders/' }] });
    assert.equal(d.routes[0]!.host, 'api.example.com');
    assert.equal(d.routes[0]!.prefix, '/orders', 'a trailing slash is the same prefix');
    assert.equal(d.routes[0]!.methods, undefined, 'every method');
    assert.deepEqual(d.trustedProxies, ['127.0.0.0/8', '::1/128'], 'loopback only by default');
  });

  it('refuses unknown keys, bad CIDRs, empty routes and malformed routes with a clear message', () => {
    refused('{', /not JSON/);
    refused([], /must hold a JSON object/);
    refused({ routes: [route], trusted_proxy: [] }, /unknown key "trusted_proxy"/);
    refused({ routes: [{ ...route, scope: ['x'] }] }, /routes\[0\]: unknown key "scope"/);
    refused({ routes: [] }, /"routes" must be a non-empty array/);
    refused({}, /"routes" must be a non-empty array/);
    for (const bad of ['10.0.0.0/33', '::1/129', '10.0.0/8', 'localhost', '10.0.0.0/', '10.0.0.0/08', ''])
      refused({ routes: [route], trusted_proxies: [bad] }, /trusted_proxies\[0\] is not a valid address or CIDR range/);
    refused({ routes: [route], trusted_proxies: [] }, /trusted_proxies is empty/);
    refused({ routes: [route], trusted_proxies: '127.0.0.1' }, /must be an array/);
    for (const prefix of ['orders', '/orders?x', '//orders', '/a//b', '/a/../b', '/a/./b', '/a b', '/a%2fb', '/a;b', 7])
      refused({ routes: [{ ...route, prefix }] }, /prefix must/);
    refused({ routes: [{ prefix: '/o' }] }, /audience must be a non-empty string/);
    refused({ routes: [{ ...route, host: 'api.example.com:443' }] }, /host must be a host name without port/);
    refused({ routes: [{ ...route, host: 'https://api.example.com' }] }, /host must be a host name/);
    refused({ routes: [{ ...route, methods: [] }] }, /methods is empty/);
    refused({ routes: [{ ...route, methods: ['GET POST'] }] }, /not a valid HTTP method/);
    refused({ routes: [{ ...route, scopes: 'orders:read' }] }, /scopes must be an array/);
    refused({ routes: [{ ...route, scopes: ['a b'] }] }, /not a valid scope/);
    refused({ routes: [route, { ...route, prefix: '/orders/' }] }, /two routes for host \(any\) and prefix \/orders/);
  });

  it('trusted_proxies: single addresses, ranges, IPv4-mapped peers of a dual-stack listener', () => {
    const c = parse({ routes: [route], trusted_proxies: ['10.1.0.0/16', '192.0.2.7', 'fd00::/8'] });
    assert.ok(isTrusted(c.trusted, '10.1.200.3'));
    assert.ok(isTrusted(c.trusted, '::ffff:10.1.0.1'));
    assert.ok(isTrusted(c.trusted, '192.0.2.7'));
    assert.ok(isTrusted(c.trusted, 'fd12::1'));
    assert.ok(!isTrusted(c.trusted, '10.2.0.1'));
    assert.ok(!isTrusted(c.trusted, '192.0.2.8'));
    assert.ok(!isTrusted(c.trusted, '127.0.0.1'), 'loopback is not trusted once the list is given');
    assert.ok(!isTrusted(c.trusted, undefined));
    const loopback = parse({ routes: [route] });
    assert.ok(isTrusted(loopback.trusted, '127.0.0.1') && isTrusted(loopback.trusted, '::1') && isTrusted(loopback.trusted, '::ffff:127.0.0.2'));
    assert.ok(!isTrusted(loopback.trusted, '10.0.0.1'));
  });
});

describe('route matching', () => {
  const table = new RouteTable(parse({
    routes: [
      { prefix: '/', audience: 'root' },
      { prefix: '/orders', audience: 'orders' },
      { prefix: '/orders/admin', audience: 'admin' },
      { prefix: '/orders', audience: 'orders-on-api', host: 'api.example.com' },
    ],
  }).routes);
  const match = (host: string | undefined, path: string) => table.match(host, path)?.audience;

  it('the longest prefix on a segment boundary; a route naming the host first; the host without its port', () => {
    assert.equal(match('other.example', '/orders'), 'orders');
    assert.equal(match('other.example', '/orders/42'), 'orders');
    assert.equal(match('other.example', '/ordersX'), 'root', '/orders does not cover /ordersX');
    assert.equal(match('other.example', '/orders/admin/1'), 'admin');
    assert.equal(match('other.example', '/orders/administrator'), 'orders');
    assert.equal(match('api.example.com', '/orders/1'), 'orders-on-api');
    assert.equal(match('API.example.com:8443', '/orders/1'), 'orders-on-api');
    assert.equal(match('api.example.com.', '/orders/1'), 'orders-on-api');
    assert.equal(match('api.example.com', '/orders/admin/1'), 'admin', 'a longer prefix wins over the host');
    const strict = new RouteTable(parse({ routes: [route] }).routes);
    assert.equal(strict.match('x', '/ordersX'), undefined, 'nothing matched: no route');
    assert.equal(strict.match('x', '/'), undefined);
  });

  it('path normalisation: dot segments (also encoded), empty segments, ";", encoded separators are refused', () => {
    const problem = (p: string) => {
      const r = normalisePath(p);
      return 'problem' in r ? r.problem : undefined;
    };
    for (const p of ['/orders/../admin', '/orders/..', '/./orders', '/orders/%2e%2e/admin', '/orders/%2E%2e/admin', '/orders/.%2e/admin', '/orders/%2e/x']) assert.equal(problem(p), 'dot_segment', p);
    for (const p of ['//orders', '/orders//42', '/orders///x/']) assert.ok(problem(p) === 'empty_segment', p);
    for (const p of ['/orders;x/1', '/orders/1;jsessionid=2', '/orders\\..\\admin', '/orders/ 1', '/orders/\u00e9', '/orders/\r\n']) assert.equal(problem(p), 'bad_character', p);
    for (const p of ['/orders%2f..%2fadmin', '/orders/%5c', '/orders/%3b', '/orders/%252e%252e', '/orders/%00', '/orders/%0d%0a']) assert.equal(problem(p), 'encoded_separator', p);
    for (const p of ['/orders/%zz', '/orders/%2']) assert.equal(problem(p), 'bad_escape', p);
    assert.equal(problem('orders'), 'not_absolute');
    assert.deepEqual(normalisePath('/%6frders/42?x=../..#frag'), { path: '/orders/42' }, 'unreserved escapes decoded, the query ignored');
    assert.deepEqual(normalisePath('/orders/a%20b%3F'), { path: '/orders/a%20b%3F' }, 'other escapes kept (upper case)');
    assert.deepEqual(normalisePath('/orders/'), { path: '/orders/' }, 'a trailing slash');
    assert.equal(match('x', (normalisePath('/%6Frders/admin/1') as { path: string }).path), 'admin');
  });
});

describe('identity headers', () => {
  const claims = (extra: Partial<AccessTokenClaims>): AccessTokenClaims => ({ iss: 'i', sub: 'user-1', client_id: 'c1', aud: 'a', exp: 1, iat: 1, jti: 'j1', scope: 'orders:read', ...extra });

  it('plain claims as they are; act as JSON with every non-ASCII character escaped', () => {
    assert.deepEqual(identityHeaders(claims({})), { headers: { 'X-Sigil-Scope': 'orders:read', 'X-Sigil-Client-Id': 'c1', 'X-Sigil-Sub': 'user-1', 'X-Sigil-Jti': 'j1' } });
    assert.equal((identityHeaders(claims({ scope: undefined })) as { headers: Record<string, string> }).headers['X-Sigil-Scope'], '', 'always sent, empty without scope');
    const act = { sub: 'svc\r\nX-Sigil-Sub: admin', act: { sub: 'caf\u00e9 \u2028' } };
    const h = (identityHeaders(claims({ act })) as { headers: Record<string, string> }).headers['X-Sigil-Act']!;
    assert.match(h, /^[\x20-\x7e]+$/, 'visible ASCII only');
    assert.deepEqual(JSON.parse(h), act, 'the same chain');
    assert.equal(asciiJson('\u0000'), '"\\u0000"');
  });

  it('a sub, client_id, scope or jti with CR/LF or non-ASCII is refused, never altered', () => {
    for (const [k, v] of [['sub', 'a\r\nX-Evil: 1'], ['sub', 'jos\u00e9'], ['client_id', 'c\n'], ['jti', ' j'], ['scope', 'a\tb'], ['sub', '']] as const) {
      const r = identityHeaders(claims({ [k]: v }));
      assert.ok('unsafeClaim' in r, `${k}=${JSON.stringify(v)}`);
      assert.equal(r.unsafeClaim, k);
    }
  });
});
