// The route table alone: one spelling per path, 405 with Allow, parameters in their one format.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rawPath, ROUTES, RouteTable } from '../../src/server/routes.js';
import { pathVariants } from '../support/path-variants.js';

const table = new RouteTable(ROUTES);
const CLIENT_ID = '0123456789abcdef0123456789abcdef';
const LIST_ID = '1973120-0';

/** every route with its parameters filled in */
const concrete = ROUTES.map((route) => ({
  route,
  methods: route.methods,
  concretePath: route.path.replace('{client_id}', CLIENT_ID).replace('{token_id}', 'a1b2c3d4e5f60718').replace('{list_id}', LIST_ID),
}));

describe('route table', () => {
  it('resolves every listed method of every route', () => {
    for (const r of concrete) {
      for (const m of r.methods) assert.equal(table.resolve(m, r.concretePath).route, r.route, `${m} ${r.concretePath}`);
    }
  });

  it('answers HEAD only where it is listed (the public read endpoints), not wherever GET is', () => {
    for (const path of ['/jwks', '/.well-known/oauth-authorization-server', '/status-lists', `/status-lists/${LIST_ID}`, '/health']) {
      assert.ok(table.resolve('HEAD', path).route, path);
    }
    for (const path of ['/status-lists/events', `/register/${CLIENT_ID}`, '/admin/clients', `/admin/clients/${CLIENT_ID}`]) {
      assert.equal(table.resolve('GET', path).route?.methods.includes('GET'), true, path);
      assert.equal(table.resolve('HEAD', path).route, undefined, path);
    }
  });

  it('answers another method on a served path with the Allow list (405), nothing else', () => {
    assert.deepEqual(table.resolve('GET', '/token'), { route: undefined, allow: 'POST' });
    assert.deepEqual(table.resolve('OPTIONS', '/jwks'), { route: undefined, allow: 'GET, HEAD' });
    assert.deepEqual(table.resolve('POST', `/register/${CLIENT_ID}`), { route: undefined, allow: 'GET, PUT, DELETE' });
    assert.deepEqual(table.resolve('DELETE', '/admin/clients'), { route: undefined, allow: 'GET, POST' });
    assert.deepEqual(table.resolve('POST', '/status-lists/events'), { route: undefined, allow: 'GET' });
    for (const m of ['TRACE', 'PATCH', 'PROPFIND', 'get', 'Post']) assert.equal(table.resolve(m, '/token').route, undefined, m);
  });

  it('finds no route for any other spelling of a served path', () => {
    for (const r of concrete) {
      for (const variant of pathVariants(r.concretePath)) {
        for (const m of [...r.methods, 'HEAD']) {
          const got = table.resolve(m, variant);
          assert.deepEqual(got, { route: undefined, allow: undefined }, `${m} ${variant} must be 404, got ${JSON.stringify({ ...got, route: got.route?.path })}`);
        }
      }
    }
  });

  it('takes a parameter only in its own format', () => {
    for (const id of ['..', '.', 'a.b', 'a%2Fb', 'a%20', 'a b', 'ab~', '', 'x'.repeat(129), 'ä']) {
      assert.equal(table.resolve('GET', `/register/${id}`).route, undefined, `client_id ${JSON.stringify(id)}`);
      assert.equal(table.resolve('GET', `/admin/clients/${id}`).route, undefined, `client_id ${JSON.stringify(id)}`);
    }
    for (const id of ['1-1', '999999999999-999999']) assert.equal(table.resolve('GET', `/status-lists/${id}`).route?.endpoint, 'status-list', id);
    for (const id of ['1', 'a-1', '1-', '-1', '1-1.jwt', '1-1-1', 'events2', '1234567890123-1']) {
      assert.equal(table.resolve('GET', `/status-lists/${id}`).route, undefined, `list_id ${id}`);
    }
    assert.equal(table.resolve('GET', '/status-lists/events').route?.endpoint, 'status-list-events');
    assert.equal(table.resolve('GET', `/admin/clients/sigil-admin`).route?.path, '/admin/clients/{client_id}');
  });

  it('serves none of oidc-provider\'s other routes', () => {
    const theirs = ['/auth', '/auth/abc', '/session/end', '/session/end/confirm', '/session/end/success', '/me', '/request', '/device',
      '/device/auth', '/device/abc', '/backchannel', '/reg', '/reg/abc', '/challenge', '/credential', '/token/introspection', '/token/revocation',
      '/interaction/abc', '/interaction/abc/abort', '/.well-known/openid-credential-issuer', '/', '/admin', '/admin/', '/register/'];
    for (const path of theirs) {
      for (const m of ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS']) assert.deepEqual(table.resolve(m, path), { route: undefined, allow: undefined }, `${m} ${path}`);
    }
  });

  it('takes the path as it arrived: a fragment or a path parameter is part of it, the query is not', () => {
    assert.equal(rawPath('/token'), '/token');
    assert.equal(rawPath('/token?a=b'), '/token');
    assert.equal(rawPath('/token?'), '/token');
    assert.equal(rawPath('/token#x'), '/token#x');
    assert.equal(rawPath('/token#x?y'), '/token#x');
    assert.equal(rawPath('/token;x?y'), '/token;x');
  });

  it('refuses a table that lists a method twice or a parameter with no format', () => {
    assert.throws(() => new RouteTable([...ROUTES, { path: '/token', methods: ['POST'], endpoint: 'token', needsStorage: true }]), /POST \/token is listed twice/);
    for (const path of ['/x/{nope}', '/x/{constructor}', '/x/{client_id']) {
      assert.throws(() => new RouteTable([{ path, methods: ['GET'], endpoint: 'health', needsStorage: false }]), /no format/, path);
    }
  });
});
