// The admin operations' reachability hook (`check`, wired to the trust fetcher): asked before a trust
// domain or federation is stored, with what is about to be trusted; its reason refuses the addition and
// nothing is stored. A URL the destination rules refuse never reaches it (nothing is fetched).
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { ClientStore } from '../../src/clients/client-store.js';
import { trustAdmin, type TrustCandidate } from '../../src/server/trust-admin-api.js';
import { createMemoryStore } from '../../src/storage/fast-store.js';
import { migrate } from '../../src/storage/migrate.js';
import { TrustInputError } from '../../src/workload/trust-input.js';
import { TrustStore } from '../../src/workload/trust-store.js';
import { makePgDb, silentLog, type TestDb } from './helpers.js';

describe('trust admin: the reachability check before adding', () => {
  let t: TestDb;
  let store: TrustStore;
  let server: ReturnType<Koa['listen']>;
  let url: string;
  const asked: TrustCandidate[] = [];
  let answer: string | undefined;

  before(async () => {
    t = await makePgDb();
    await migrate(t.db);
    const bus = createMemoryStore();
    store = new TrustStore(t.db, bus, silentLog, new ClientStore(t.db, bus));
    await store.start();
    const ops = trustAdmin({
      trust: store, log: silentLog, destinations: { allowHttpLoopback: false, allowedHosts: [] },
      check: async (what) => {
        asked.push(what);
        return answer;
      },
    });
    // the admin gate's part, in small: the raw body, and TrustInputError as 400
    const app = new Koa();
    app.use(async (ctx) => {
      ctx.state.rawBody = await new Promise<string>((resolve) => {
        let body = '';
        ctx.req.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve(body));
      });
      const op = ctx.path === '/trust-domains' ? ops['add-trust-domain'] : ops['add-federation'];
      try {
        await op(ctx, 'sigil-admin', {});
      } catch (err) {
        if (!(err instanceof TrustInputError)) throw err;
        ctx.status = 400;
        ctx.body = { error: 'invalid_request', error_description: err.message };
      }
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    store?.close();
    await new Promise((resolve) => server?.close(resolve));
    await t?.cleanup();
  });

  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: await res.json() as { error_description?: string; name?: string } };
  };

  it('an unreachable bundle endpoint is refused with the fetcher\'s reason, and nothing is stored', async () => {
    answer = 'the bundle endpoint answered 404';
    const res = await post('/trust-domains', { name: 'example.org', bundle_endpoint: 'https://spire.example.org/bundle' });
    assert.equal(res.status, 400);
    assert.equal(res.body.error_description, 'bundle_endpoint cannot be used now: the bundle endpoint answered 404');
    assert.deepEqual(asked.at(-1), { kind: 'trust-domain', name: 'example.org', bundleEndpoint: 'https://spire.example.org/bundle' });
    assert.deepEqual(await t.sql('SELECT name FROM trust_domains'), []);
    assert.deepEqual(await t.sql("SELECT id FROM audit_log WHERE action LIKE 'trust_domain.%'"), []);
  });

  it('a reachable one is stored', async () => {
    answer = undefined;
    const res = await post('/trust-domains', { name: 'example.org', bundle_endpoint: 'https://spire.example.org/bundle' });
    assert.equal(res.status, 201);
    assert.equal(res.body.name, 'example.org');
  });

  it('a federation is checked with its jwks_uri, or its issuer for discovery', async () => {
    answer = 'no OIDC discovery document';
    const res = await post('/federations', { issuer: 'https://k8s.example' });
    assert.equal(res.status, 400);
    assert.equal(res.body.error_description, 'issuer cannot be used now: no OIDC discovery document');
    assert.deepEqual(asked.at(-1), { kind: 'federation', issuer: 'https://k8s.example' });
    answer = 'keys not a JWKS';
    const withUri = await post('/federations', { issuer: 'https://k8s.example', jwks_uri: 'https://k8s.example/keys' });
    assert.match(withUri.body.error_description ?? '', /^jwks_uri cannot be used now/);
    assert.deepEqual(asked.at(-1), { kind: 'federation', issuer: 'https://k8s.example', jwksUri: 'https://k8s.example/keys' });
    assert.deepEqual(await t.sql('SELECT issuer FROM federations'), []);
  });

  it('a URL the destination rules refuse is never handed to the fetcher', async () => {
    const before = asked.length;
    const res = await post('/trust-domains', { name: 'internal.org', bundle_endpoint: 'https://169.254.169.254/latest' });
    assert.equal(res.status, 400);
    assert.match(res.body.error_description ?? '', /link-local/);
    assert.equal(asked.length, before);
  });
});
