import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { errors } from 'oidc-provider';
import { grantedScope, resolveAudience } from '../../src/tokens/token-policy.js';
import type { ClientRecord } from '../../src/clients/client-store.js';

function client(audiences: string[]): ClientRecord {
  return {
    clientId: 'c', name: 'c', status: 'active', scope: ['a'], audiences, serves: [], grantTypes: ['client_credentials'],
    dpopRequired: true, canIntrospect: false, isAdmin: false, jwksUri: 'https://k.example/jwks', tokenBinding: 'dpop', createdAt: new Date(), updatedAt: new Date(),
  };
}

const invalidTarget = (err: unknown) => {
  assert.ok(err instanceof errors.InvalidTarget, `expected InvalidTarget, got ${String(err)}`);
  assert.equal(err.error, 'invalid_target');
  assert.equal(err.status, 400);
  return true;
};
const invalidScope = (scope: string) => (err: unknown) => {
  assert.ok(err instanceof errors.InvalidScope, `expected InvalidScope, got ${String(err)}`);
  assert.equal(err.error, 'invalid_scope');
  assert.equal((err as unknown as { scope: string }).scope, scope);
  return true;
};

describe('resolveAudience', () => {
  const c = client(['https://one.example', 'https://two.example']);

  it('defaults to the first registered audience', () => {
    assert.equal(resolveAudience(undefined, c), 'https://one.example');
    assert.equal(resolveAudience('', c), 'https://one.example');
  });

  it('returns an explicitly requested registered audience', () => {
    assert.equal(resolveAudience('https://two.example', c), 'https://two.example');
  });

  it('refuses an unregistered resource with invalid_target', () => {
    assert.throws(() => resolveAudience('https://evil.example', c), invalidTarget);
    assert.throws(() => resolveAudience('https://one.example/', c), invalidTarget, 'no prefix or normalisation matching');
    assert.throws(() => resolveAudience(42, c), invalidTarget);
  });

  it('refuses several resources at once', () => {
    assert.throws(() => resolveAudience(['https://one.example', 'https://two.example'], c), invalidTarget);
    assert.throws(() => resolveAudience(['https://one.example'], c), invalidTarget);
  });

  it('refuses when the client has no registered audience', () => {
    assert.throws(() => resolveAudience(undefined, client([])), invalidTarget);
    assert.throws(() => resolveAudience('https://one.example', client([])), invalidTarget);
  });
});

describe('grantedScope', () => {
  const allowed = ['orders:read', 'orders:write', 'billing:read'];

  it('grants a requested subset, de-duplicated, in the order asked', () => {
    assert.deepEqual(grantedScope('orders:write orders:read', allowed), ['orders:write', 'orders:read']);
    assert.deepEqual(grantedScope('orders:read  orders:read', allowed), ['orders:read']);
  });

  it('refuses a scope that is not allowed, naming only the refused ones', () => {
    assert.throws(() => grantedScope('orders:read admin', allowed), invalidScope('admin'));
    assert.throws(() => grantedScope('x y orders:read', allowed), invalidScope('x y'));
  });

  it('grants everything allowed when nothing is asked', () => {
    assert.deepEqual(grantedScope(undefined, allowed), allowed);
    assert.deepEqual(grantedScope('', allowed), allowed);
    const result = grantedScope(undefined, allowed);
    result.push('mutated');
    assert.equal(allowed.length, 3, 'returns a copy');
  });

  it('refuses a scope that is not a string', () => {
    assert.throws(() => grantedScope(['orders:read'], allowed), (err) => err instanceof errors.InvalidScope);
  });
});
