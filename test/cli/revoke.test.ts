// `sigil clients revoke`, `sigil clients keys set` and `sigil tokens revoke` against a real server (real
// Postgres and Redis), run as a child process; the effects are checked the way clients see them: at the
// token endpoint and at introspection.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, type JWK } from 'jose';
import {
  clientAssertion, generateClientKey, keyPairFromPrivateJwk, requestToken, TokenError, type SigningKeyPair,
} from '../../src/client/oauth-client.js';
import type { ServerProcess } from '../support/server.js';
import { assertFailure, clientKeyFile, jsonOf, sigil, type CliOptions, initialisedCliWorld, type CliWorld } from './harness.js';
import { observedWithin } from '../support/wait.js';

const API = 'https://api.example.com/orders';

describe('sigil CLI: revoking clients and tokens, replacing client keys', () => {
  let world: CliWorld;
  let server: ServerProcess;
  let work: CliWorld['work'];
  let opts: CliOptions;

  before(async () => {
    world = await initialisedCliWorld('revoke');
    ({ server, work, opts } = world);
  });
  after(() => world?.close());

  interface Created {
    id: string;
    key: SigningKeyPair;
    privateJwk: JWK;
  }

  /** a client made with `sigil clients create`, and its private key */
  async function createClient(name: string, ...extra: string[]): Promise<Created> {
    const file = `${name}.jwks.json`;
    const { privateJwk } = await clientKeyFile(path.join(work.dir, file));
    const client = jsonOf(await sigil(['clients', 'create', '--json', '--name', name, '--jwks-file', file, '--audience', API, '--scope', 'orders:read', ...extra], opts));
    return { id: client.client_id, key: await keyPairFromPrivateJwk(privateJwk), privateJwk };
  }

  /** a DPoP-bound token for `clientId`, its assertion signed with `key` */
  function token(clientId: string, key: SigningKeyPair) {
    return requestToken({ tokenEndpoint: `${server.url}/token`, htu: `${server.issuer}/token`, issuer: server.issuer, clientId, clientKey: key, dpopKey: key });
  }

  /** the token request is refused with 401 invalid_client */
  async function assertNoToken(clientId: string, key: SigningKeyPair, why: string) {
    await assert.rejects(token(clientId, key), (err: unknown) => {
      assert.ok(err instanceof TokenError, `${why}: ${String(err)}`);
      assert.equal(err.status, 401, why);
      assert.equal(err.body.error, 'invalid_client', why);
      return true;
    });
  }

  /** RFC 7662 introspection of `tok` by `clientId` (private_key_jwt with `key`) */
  async function introspect(clientId: string, key: SigningKeyPair, tok: string): Promise<any> {
    const res = await fetch(`${server.url}/introspect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        client_id: clientId,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await clientAssertion(key, clientId, server.issuer),
        token: tok,
      }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, `introspection answered ${res.status}: ${JSON.stringify(body)}`);
    return body;
  }

  /** introspection says inactive within the contract's one second */
  async function assertInactiveWithinASecond(clientId: string, key: SigningKeyPair, tok: string) {
    await observedWithin('introspection says inactive', Date.now(), 1000, async () => {
      const answer = await introspect(clientId, key, tok);
      if (answer.active !== false) return JSON.stringify(answer);
      assert.deepEqual(answer, { active: false });
      return true;
    });
  }

  describe('clients revoke', () => {
    let victim: Created;
    let gateway: Created;
    let heldToken: string;
    let revoked: any;

    before(async () => {
      victim = await createClient('victim');
      gateway = await createClient('gateway', '--can-introspect');
      heldToken = (await token(victim.id, victim.key)).access_token;
      assert.equal((await introspect(gateway.id, gateway.key, heldToken)).active, true, 'the token is live before the revocation');
    });

    it('prints the client with status revoked and the reason (--json)', async () => {
      const started = Date.now();
      const run = await sigil(['clients', 'revoke', victim.id, '--reason', 'key leaked in CI logs', '--json'], opts);
      revoked = jsonOf(run);
      assert.equal(run.stderr, '', 'nothing on stderr with --json');
      assert.equal(revoked.client_id, victim.id);
      assert.equal(revoked.name, 'victim');
      assert.equal(revoked.status, 'revoked');
      assert.equal(revoked.revoked_reason, 'key leaked in CI logs');
      assert.equal(revoked.revoked_by, 'sigil-admin');
      assert.ok(Date.parse(revoked.revoked_at) >= started - 5000, revoked.revoked_at);
    });

    it('the revoked client gets no token, and the token it held is refused', async () => {
      await assertNoToken(victim.id, victim.key, 'a revoked client asks for a token');
      await assertInactiveWithinASecond(gateway.id, gateway.key, heldToken);
    });

    it('clients show and clients list say revoked', async () => {
      const shown = jsonOf(await sigil(['clients', 'show', victim.id, '--json'], opts));
      assert.deepEqual(shown, revoked);
      const human = await sigil(['clients', 'show', victim.id], opts);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /status\s+revoked/);
      assert.match(human.stdout, /revoked_reason\s+key leaked in CI logs/);
      const listed = jsonOf(await sigil(['clients', 'list', '--json'], opts));
      assert.equal(listed.find((c: any) => c.client_id === victim.id)?.status, 'revoked');
      assert.equal(listed.find((c: any) => c.client_id === gateway.id)?.status, 'active', 'only the named client is revoked');
    });

    it('revoking again succeeds and changes nothing (human form)', async () => {
      const again = await sigil(['clients', 'revoke', victim.id, '--reason', 'second thoughts'], opts);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.stderr, '');
      assert.match(again.stdout, /^Client revoked/);
      assert.match(again.stdout, new RegExp(`client_id\\s+${victim.id}`));
      assert.match(again.stdout, /status\s+revoked/);
      const shown = jsonOf(await sigil(['clients', 'show', victim.id, '--json'], opts));
      assert.equal(shown.status, 'revoked');
      assert.equal(shown.revoked_at, revoked.revoked_at, 'the first revocation stands');
      assert.equal(shown.revoked_reason, revoked.revoked_reason);
      await assertNoToken(victim.id, victim.key, 'still revoked');
    });

    it('revoking without --reason works (--json), and an unknown id fails with exit 1', async () => {
      const other = await createClient('other');
      const r = jsonOf(await sigil(['clients', 'revoke', other.id, '--json'], opts));
      assert.equal(r.status, 'revoked');
      assert.equal(r.revoked_reason ?? null, null);
      assertFailure(await sigil(['clients', 'revoke', 'no-such-client'], opts), 1, /no client with client_id "no-such-client"/);
      assertFailure(await sigil(['clients', 'revoke', 'no-such-client', '--json'], opts), 1, /no client with client_id "no-such-client"/);
    });

    it('the admin client cannot be revoked (exit 1, the server\'s reason), and the CLI keeps working', async () => {
      assertFailure(await sigil(['clients', 'revoke', 'sigil-admin'], opts), 1, /admin client cannot revoke itself/);
      assert.equal(jsonOf(await sigil(['clients', 'show', 'sigil-admin', '--json'], opts)).status, 'active');
    });
  });

  describe('clients keys set', () => {
    let client: Created;
    let newKey: SigningKeyPair;
    let newJwk: JWK;

    before(async () => {
      client = await createClient('rotating');
      await token(client.id, client.key); // the old key works to begin with
    });

    it('replaces the keys: the old key is refused, the new one gets tokens', async () => {
      const { privateJwk } = await clientKeyFile(path.join(work.dir, 'rotating-new.jwks.json'));
      newJwk = privateJwk;
      newKey = await keyPairFromPrivateJwk(privateJwk);
      const run = await sigil(['clients', 'keys', 'set', client.id, '--jwks-file', 'rotating-new.jwks.json', '--json'], opts);
      const updated = jsonOf(run);
      assert.equal(run.stderr, '', 'nothing on stderr with --json');
      assert.equal(updated.client_id, client.id);
      assert.equal(updated.status, 'active');
      assert.equal(updated.jwks.keys.length, 1);
      assert.equal(updated.jwks.keys[0].kid, privateJwk.kid);
      assert.equal(updated.jwks.keys[0].x, privateJwk.x);
      assert.equal(updated.jwks.keys[0].d, undefined);

      await assertNoToken(client.id, client.key, 'an assertion signed with the replaced key');
      const fresh = await token(client.id, newKey);
      assert.equal(decodeJwt(fresh.access_token).client_id, client.id);
    });

    it('the human form names the new key', async () => {
      const run = await sigil(['clients', 'keys', 'set', client.id, '--jwks-file', 'rotating-new.jwks.json'], opts);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^Keys replaced/);
      assert.ok(run.stdout.includes(`1 key: ${newJwk.kid}`), run.stdout);
    });

    it('refuses a file with private members before sending anything (exit 2)', async () => {
      const { privateJwk } = await generateClientKey('ES256');
      await writeFile(path.join(work.dir, 'leaky.jwks.json'), JSON.stringify({ keys: [privateJwk] }));
      const run = await sigil(['clients', 'keys', 'set', client.id, '--jwks-file', 'leaky.jwks.json', '--json'], opts);
      assertFailure(run, 2, /contains private or secret members \(d\)/);
      assert.ok(!run.stderr.includes(privateJwk.d!), 'the private key is never echoed');
      const shown = jsonOf(await sigil(['clients', 'show', client.id, '--json'], opts));
      assert.equal(shown.jwks.keys[0].x, newJwk.x, 'the registered key is unchanged');
      await token(client.id, newKey);
    });

    it('an unknown id fails with exit 1', async () => {
      assertFailure(await sigil(['clients', 'keys', 'set', 'no-such-client', '--jwks-file', 'rotating-new.jwks.json'], opts), 1, /no client with client_id "no-such-client"/);
    });
  });

  describe('tokens revoke', () => {
    let client: Created;
    let tok: string;
    let jti: string;

    before(async () => {
      client = await createClient('holder');
      tok = (await token(client.id, client.key)).access_token;
      jti = decodeJwt(tok).jti!;
      assert.ok(jti);
      assert.equal((await introspect(client.id, client.key, tok)).active, true, 'the token is live before the revocation');
    });

    it('prints the revocation record of a real token (--json)', async () => {
      const run = await sigil(['tokens', 'revoke', jti, '--reason', 'laptop stolen', '--json'], opts);
      const record = jsonOf(run);
      assert.equal(run.stderr, '', 'nothing on stderr with --json');
      assert.equal(record.jti, jti);
      assert.equal(record.client_id, client.id);
      assert.equal(record.status, 'revoked');
      assert.equal(record.known, true);
      assert.equal(record.reason, 'laptop stolen');
      assert.equal(record.revoked_by, 'sigil-admin');
      assert.ok(!Number.isNaN(Date.parse(record.revoked_at)));
      assert.equal(Date.parse(record.expires_at) / 1000, decodeJwt(tok).exp, 'kept until the token would have expired');
    });

    it('the token then introspects as inactive; the client itself still gets new tokens', async () => {
      await assertInactiveWithinASecond(client.id, client.key, tok);
      const fresh = (await token(client.id, client.key)).access_token;
      assert.equal((await introspect(client.id, client.key, fresh)).active, true, 'only that one token is revoked');
    });

    it('revoking it again succeeds (human form)', async () => {
      const run = await sigil(['tokens', 'revoke', jti], opts);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^Token revoked/);
      assert.match(run.stdout, new RegExp(`jti\\s+${jti}`));
      assert.match(run.stdout, new RegExp(`client_id\\s+${client.id}`));
      assert.match(run.stdout, /status\s+revoked/);
    });

    it('an unknown jti is recorded anyway: exit 0, known false', async () => {
      const record = jsonOf(await sigil(['tokens', 'revoke', 'no-such-jti-0001', '--json'], opts));
      assert.equal(record.jti, 'no-such-jti-0001');
      assert.equal(record.status, 'revoked');
      assert.equal(record.known, false);
      assert.equal(record.client_id, null);

      const human = await sigil(['tokens', 'revoke', 'no-such-jti-0002'], opts);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /no record of issuing jti "no-such-jti-0002"/);
      assert.match(human.stdout, /known\s+no/);
    });

    it('a jti that begins with "-" (base64url: one in 64) is the argument, not an option', async () => {
      const dashed = '-WXHvNXdwVlbIwsMpwbEf-GqKz2plsjIEI7Oxl-Qv-8';
      const record = jsonOf(await sigil(['tokens', 'revoke', dashed, '--reason', '-also a dash', '--json'], opts));
      assert.equal(record.jti, dashed);
      assert.equal(record.reason, '-also a dash');
      const human = await sigil(['tokens', 'revoke', '--reason', 'x', dashed], opts);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, new RegExp(`jti\\s+${dashed}`));
    });
  });
});
