// `sigil keys list` and `sigil keys rotate` against a real server.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServerProcess } from '../support/server.js';
import { assertFailure, jsonOf, sigil, type CliOptions, initialisedCliWorld, type CliWorld } from './harness.js';

describe('sigil CLI: signing keys', () => {
  let world: CliWorld;
  let server: ServerProcess;
  let opts: CliOptions;

  before(async () => {
    world = await initialisedCliWorld('keys');
    ({ server, opts } = world);
  });
  after(() => world?.close());

  it('lists the one active key, with no private member', async () => {
    const keys = jsonOf(await sigil(['keys', 'list', '--json'], opts));
    assert.equal(keys.length, 1);
    assert.equal(keys[0].state, 'active');
    assert.equal(keys[0].alg, 'ES256');
    for (const m of ['d', 'p', 'q', 'private_jwk', 'privateJwk']) assert.ok(!(m in keys[0]));
    const human = await sigil(['keys', 'list'], opts);
    assert.equal(human.code, 0);
    assert.match(human.stdout, /^KID\s+ALG\s+STATE/);
  });

  it('rotate stages a next key published at once and activating after the JWKS max-age; a second rotate is refused', async () => {
    const result = jsonOf(await sigil(['keys', 'rotate', '--json'], opts));
    assert.equal(result.staged.state, 'next');
    const activatesIn = Date.parse(result.staged.activates_at) - Date.now();
    assert.ok(activatesIn >= 300_000, 'not before the default JWKS max-age (300 s) has passed');
    const jwks = await (await fetch(`${server.url}/jwks`)).json();
    assert.ok(jwks.keys.some((k: { kid: string }) => k.kid === result.staged.kid), 'the staged key is published');
    const maxAge = Number(/max-age=(\d+)/.exec((await fetch(`${server.url}/jwks`)).headers.get('cache-control') ?? '')?.[1]);
    assert.ok(maxAge * 1000 <= activatesIn, 'the JWKS is not cacheable past the activation');
    const states = jsonOf(await sigil(['keys', 'list', '--json'], opts)).map((k: { state: string }) => k.state).sort();
    assert.deepEqual(states, ['active', 'next']);
    assertFailure(await sigil(['keys', 'rotate'], opts), 1, /already staged/);
  });
});
