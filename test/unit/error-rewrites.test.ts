// The table of corrected refusals alone (the texts themselves are checked against oidc-provider in
// test/oidc/oidc-provider-contract.test.ts): what is corrected where, and what is left alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rewriteRefusal } from '../../src/oidc/error-rewrites.js';

const refusal = (description: string, status = 400, error = 'invalid_request') => ({ status, body: { error, error_description: description } as Record<string, unknown> });

describe('error rewrites', () => {
  it('no client authentication: 401 invalid_client on every corrected route', () => {
    for (const route of ['token', 'introspection', 'revocation'] as const) {
      const answer = refusal('no client authentication mechanism provided');
      assert.equal(rewriteRefusal(route, answer), true);
      assert.deepEqual(answer, { status: 401, body: { error: 'invalid_client', error_description: 'client authentication is required (private_key_jwt)' } });
    }
  });

  it('a malformed assertion is corrected at /token only', () => {
    const token = refusal('invalid client_assertion format');
    assert.equal(rewriteRefusal('token', token), true);
    assert.deepEqual(token, { status: 401, body: { error: 'invalid_client', error_description: 'client_assertion is not a signed JWT' } });
    const introspection = refusal('invalid client_assertion format');
    assert.equal(rewriteRefusal('introspection', introspection), false);
    assert.deepEqual(introspection, refusal('invalid client_assertion format'));
  });

  it('a grant type the client does not hold: unauthorized_client, oidc-provider\'s description and other members kept', () => {
    const answer = refusal('requested grant type is not allowed for this client');
    (answer.body as Record<string, unknown>).extra = 1;
    assert.equal(rewriteRefusal('token', answer), true);
    assert.deepEqual(answer, { status: 400, body: { error: 'unauthorized_client', error_description: 'requested grant type is not allowed for this client', extra: 1 } });
  });

  it('anything else is left as it is: another text, another code, another status, a token', () => {
    for (const answer of [
      refusal('no client authentication mechanism provided!'),
      refusal('no client authentication mechanism provided', 400, 'invalid_client'),
      refusal('no client authentication mechanism provided', 401),
      { status: 200, body: { access_token: 'x' } as Record<string, unknown> },
    ]) {
      const before = structuredClone(answer);
      assert.equal(rewriteRefusal('token', answer), false);
      assert.deepEqual(answer, before);
    }
  });
});
