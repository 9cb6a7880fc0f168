// The two planes' tables and what a matched route hands its handler (routes.test.ts pins the matching itself).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ADMIN_ROUTES, PUBLIC_ROUTES, ROUTES, RouteTable } from '../../src/server/routes.js';

const table = new RouteTable(ROUTES);

describe('route planes', () => {
  it('keeps the planes apart: every admin route under /admin/, no public one', () => {
    for (const r of ADMIN_ROUTES) assert.ok(r.path.startsWith('/admin/'), r.path);
    for (const r of PUBLIC_ROUTES) assert.ok(!r.path.startsWith('/admin'), r.path);
    assert.equal(ROUTES.length, ADMIN_ROUTES.length + PUBLIC_ROUTES.length);
  });

  it('gives each (method, path) its own endpoint, so a handler never dispatches on the method again', () => {
    const seen = new Map<string, string>();
    for (const r of ROUTES) {
      for (const m of r.methods) {
        if (m === 'HEAD') continue;
        const before = seen.get(r.endpoint);
        // discovery has two spellings of one document: the only endpoint on more than one path
        if (before !== undefined && r.endpoint !== 'discovery') assert.fail(`${r.endpoint} serves both ${before} and ${m} ${r.path}`);
        seen.set(r.endpoint, `${m} ${r.path}`);
      }
    }
  });

  it('hands a matched route its parameters, by name; a fixed path has none', () => {
    assert.deepEqual(table.resolve('PUT', '/admin/clients/abc_D-1/jwks').params, { client_id: 'abc_D-1' });
    assert.deepEqual(table.resolve('POST', '/admin/registration-tokens/t0k/revoke').params, { token_id: 't0k' });
    assert.deepEqual(table.resolve('GET', '/register/c1').params, { client_id: 'c1' });
    assert.deepEqual(table.resolve('HEAD', '/status-lists/12-3').params, { list_id: '12-3' });
    assert.equal(table.resolve('POST', '/token').params, undefined);
    // a 405 on a parameterised path carries only the Allow list
    assert.deepEqual(table.resolve('POST', '/register/c1'), { route: undefined, allow: 'GET, PUT, DELETE' });
  });
});
