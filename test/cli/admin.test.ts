// `sigil init` and `sigil clients ...` against a real server (real Postgres and Redis), run as a child
// process exactly as an admin runs it. The tests in this file build on each other, in order.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify, type JWK } from 'jose';
import {
  dpopProof, generateClientKey, keyPairFromPrivateJwk, requestToken, thumbprint,
} from '../../src/client/oauth-client.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { adminWithKey } from '../support/sigil.js';
import { assertFailure, clientKeyFile, jsonOf, sigil, tempDir, type CliOptions } from './harness.js';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

describe('sigil CLI: init and clients against a real server', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let work: Awaited<ReturnType<typeof tempDir>>;
  /** runs in `work.dir` with SIGIL_KEYS_DIR unset: the default ./keys */
  let opts: CliOptions;
  let keyFile: string;
  let admin: any;

  before(async () => {
    storage = await createTestStorage('cli');
    server = await startServer({ env: storageEnv(storage) });
    work = await tempDir('admin');
    opts = { url: server.url, cwd: work.dir };
    keyFile = path.join(work.dir, 'keys', 'admin.private.jwk.json');
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
    await work?.remove();
  });

  /** call the admin API directly with a DPoP-bound token of `clientId` */
  async function callAs(clientId: string, privateJwk: JWK, resource: string, scope?: string) {
    const key = await keyPairFromPrivateJwk(privateJwk);
    const token = await requestToken({
      tokenEndpoint: `${server.url}/token`, htu: `${server.issuer}/token`, issuer: server.issuer, clientId, clientKey: key, dpopKey: key, resource, scope,
    });
    return fetch(`${server.url}/admin/clients`, {
      headers: {
        authorization: `DPoP ${token.access_token}`,
        dpop: await dpopProof(key, 'GET', `${server.issuer}/admin/clients`, { accessToken: token.access_token }),
      },
    });
  }

  it('init creates the admin client and writes its key (mode 0600) to ./keys by default', async () => {
    const run = await sigil(['init', '--json'], opts);
    admin = jsonOf(run);
    assert.equal(admin.client_id, 'sigil-admin');
    assert.equal(admin.status, 'active');
    assert.equal(admin.scope, 'sigil:admin');
    assert.deepEqual(admin.audiences, [`${server.issuer}/admin`]);
    assert.equal(admin.key_file, keyFile);

    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const privateJwk = JSON.parse(await readFile(keyFile, 'utf8')) as JWK;
    assert.equal(privateJwk.kty, 'EC');
    assert.ok(privateJwk.d, 'the file holds the private key');
    assert.ok(!run.stdout.includes(privateJwk.d!) && !run.stderr.includes(privateJwk.d!), 'the private key is never printed');
    assert.equal(admin.jwks.keys[0].x, privateJwk.x, 'the admin client is registered with the written key');

    // the written key really is the admin's: the admin API answers to it
    const res = await adminWithKey(server.url, server.issuer, await keyPairFromPrivateJwk(privateJwk)).call('GET', '/admin/clients/sigil-admin');
    assert.equal(res.status, 200);
  });

  it('init again changes nothing and succeeds with the same admin client', async () => {
    const before = await readFile(keyFile, 'utf8');
    const again = jsonOf(await sigil(['init', '--json'], opts));
    assert.equal(again.client_id, admin.client_id);
    assert.equal(again.created_at, admin.created_at);
    assert.deepEqual(again.jwks, admin.jwks);
    assert.equal(again.key_file, keyFile);
    assert.equal(await readFile(keyFile, 'utf8'), before, 'the key file is untouched');

    const human = await sigil(['init'], opts);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /Already initialised/);
    assert.ok(human.stdout.includes(keyFile));
  });

  it('init with an empty key dir against an initialised server fails and writes nothing', async () => {
    const keysDir = path.join(work.dir, 'elsewhere', 'keys');
    const run = await sigil(['init'], { ...opts, keysDir });
    assertFailure(run, 1, /already has an admin client, but there is no admin key at .*elsewhere\/keys\/admin\.private\.jwk\.json/);
    assert.match(run.stderr, /SIGIL_KEYS_DIR/);
    assert.equal(existsSync(path.join(work.dir, 'elsewhere')), false, 'no directory or key left behind');
  });

  it('init with a key that is not the admin\'s fails clearly', async () => {
    const keysDir = path.join(work.dir, 'wrong-keys');
    await mkdir(keysDir, { mode: 0o700 });
    const stranger = path.join(keysDir, 'admin.private.jwk.json');
    await writeFile(stranger, JSON.stringify((await generateClientKey('ES256')).privateJwk), { mode: 0o600 });
    assertFailure(await sigil(['init'], { ...opts, keysDir }), 1, /already has an admin client, and the key in .*wrong-keys.* is not its key/);
    assertFailure(await sigil(['clients', 'list'], { ...opts, keysDir }), 1, /refused the admin key in .*wrong-keys.*invalid_client/);
  });

  let created: any;
  let createdKey: JWK;

  it('clients create with every flag returns the client, which can then get tokens', async () => {
    const { privateJwk } = await clientKeyFile(path.join(work.dir, 'orders.jwks.json'));
    createdKey = privateJwk;
    const run = await sigil([
      'clients', 'create', '--json',
      '--name', 'orders service',
      '--jwks-file', 'orders.jwks.json',
      '--scope', 'orders:read orders:write',
      '--audience', 'https://api.example.com/orders',
      '--audience', 'https://api.example.com/billing',
      '--serves', 'https://api.example.com/gateway',
      '--serves', 'https://api.example.com/edge',
      '--grant-types', `client_credentials,${TOKEN_EXCHANGE}`,
      '--dpop', 'optional',
      '--can-introspect',
    ], opts);
    created = jsonOf(run);
    assert.match(created.client_id, /^[0-9a-f]{32}$/);
    assert.equal(created.name, 'orders service');
    assert.equal(created.status, 'active');
    assert.equal(created.scope, 'orders:read orders:write');
    assert.deepEqual(created.audiences, ['https://api.example.com/orders', 'https://api.example.com/billing']);
    assert.deepEqual(created.serves, ['https://api.example.com/gateway', 'https://api.example.com/edge']);
    assert.deepEqual(created.grant_types, ['client_credentials', TOKEN_EXCHANGE]);
    assert.equal(created.dpop, 'optional');
    assert.equal(created.can_introspect, true);
    assert.ok(!Number.isNaN(Date.parse(created.created_at)));
    assert.equal(created.jwks.keys[0].x, privateJwk.x);

    const key = await keyPairFromPrivateJwk(privateJwk);
    const request = { tokenEndpoint: `${server.url}/token`, htu: `${server.issuer}/token`, issuer: server.issuer, clientId: created.client_id, clientKey: key };
    const bound = await requestToken({ ...request, dpopKey: key, resource: 'https://api.example.com/billing', scope: 'orders:read' });
    assert.equal(bound.token_type, 'DPoP');
    const jwks = await (await fetch(`${server.url}/jwks`)).json();
    const { payload } = await jwtVerify(bound.access_token, createLocalJWKSet(jwks), { issuer: server.issuer, audience: 'https://api.example.com/billing' });
    assert.equal(payload.client_id, created.client_id);
    assert.equal(payload.scope, 'orders:read');
    assert.deepEqual(payload.cnf, { jkt: await thumbprint(key) });

    // --dpop optional reached the server: a bearer token is allowed too
    const bearer = await requestToken(request);
    assert.equal(bearer.token_type.toLowerCase(), 'bearer');
  });

  it('clients create defaults: jwks_uri, client_credentials, DPoP required, no introspection (human form)', async () => {
    const run = await sigil(['clients', 'create', '--name', 'partner', '--jwks-uri', 'https://partner.example.com/jwks.json', '--audience', 'https://api.example.com/orders'], opts);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^Client created\./);
    const id = /client_id\s+([0-9a-f]{32})/.exec(run.stdout)?.[1];
    assert.ok(id, run.stdout);
    const shown = jsonOf(await sigil(['clients', 'show', id, '--json'], opts));
    assert.equal(shown.jwks_uri, 'https://partner.example.com/jwks.json');
    assert.deepEqual(shown.grant_types, ['client_credentials']);
    assert.equal(shown.dpop, 'required');
    assert.equal(shown.can_introspect, false);
    assert.equal(shown.scope, '');
  });

  it('clients create surfaces a server refusal as exit 1 with the server\'s reason', async () => {
    assertFailure(
      await sigil(['clients', 'create', '--name', 'x', '--jwks-file', 'orders.jwks.json', '--audience', 'not a uri'], opts),
      1, /Sigil refused the request: audiences must be an absolute URI.*\(400 invalid_client_metadata\)/,
    );
  });

  it('clients list and clients show print the clients (JSON and human)', async () => {
    const listed = jsonOf(await sigil(['clients', 'list', '--json'], opts));
    assert.ok(Array.isArray(listed));
    const ids = listed.map((c: any) => c.client_id);
    assert.ok(ids.includes('sigil-admin') && ids.includes(created.client_id), ids.join(' '));
    for (const c of listed) assert.ok(c.status === 'active' || c.status === 'revoked');

    const shown = jsonOf(await sigil(['clients', 'show', created.client_id, '--json'], opts));
    assert.deepEqual(shown, created);

    const human = await sigil(['clients', 'list'], opts);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^CLIENT_ID\s+STATUS\s+NAME\s+SCOPE/);
    assert.ok(human.stdout.includes(created.client_id) && human.stdout.includes('orders service'));

    const one = await sigil(['clients', 'show', created.client_id], opts);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, new RegExp(`client_id\\s+${created.client_id}`));
    assert.match(one.stdout, /grant_types\s+client_credentials, urn:ietf/);
  });

  it('--json prints exactly one JSON document on stdout and nothing on stderr', async () => {
    for (const args of [['init'], ['clients', 'list'], ['clients', 'show', 'sigil-admin']]) {
      const run = await sigil([...args, '--json'], opts);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, '');
      assert.doesNotThrow(() => JSON.parse(run.stdout), `${args.join(' ')}: one JSON document`);
      assert.ok(run.stdout.trimStart().startsWith('{') || run.stdout.trimStart().startsWith('['));
    }
    // global flags may come before the command words
    assert.ok(Array.isArray(jsonOf(await sigil(['--json', 'clients', 'list'], opts))));
  });

  it('clients show of an unknown id fails with exit 1 and says so', async () => {
    assertFailure(await sigil(['clients', 'show', 'no-such-client'], opts), 1, /no client with client_id "no-such-client"/);
    assertFailure(await sigil(['clients', 'show', 'no-such-client', '--json'], opts), 1, /no client with client_id/);
  });

  it('the admin API refuses a request without a token (401)', async () => {
    const res = await fetch(`${server.url}/admin/clients`);
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error, 'invalid_token');
    const post = await fetch(`${server.url}/admin/clients`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(post.status, 401);
  });

  it('the admin API refuses a non-admin client\'s token, even one minted for the admin audience', async () => {
    // an ordinary token for the client's own API is not valid at the admin API
    const ordinary = await callAs(created.client_id, createdKey, 'https://api.example.com/orders');
    assert.equal(ordinary.status, 401);

    // nobody can even register a client with the admin plane's audience or scope
    await clientKeyFile(path.join(work.dir, 'impostor.jwks.json'));
    for (const extra of [['--audience', `${server.issuer}/admin`], ['--audience', 'https://api.example.com/x', '--scope', 'sigil:admin']]) {
      assertFailure(await sigil(['clients', 'create', '--name', 'impostor', '--jwks-file', 'impostor.jwks.json', ...extra], opts), 1, /reserved|must not name Sigil/);
    }
  });
});
