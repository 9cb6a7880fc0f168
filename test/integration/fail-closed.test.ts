// Failing closed: with Postgres or Redis unreachable, Sigil answers 503 temporarily_unavailable on
// the token path (never a token, never a hang), /ready says so, /health still answers, and once the
// store is back it serves again without a restart. The stores are real; only the link to them is
// cut, by a TCP proxy in front of each.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { clientAssertion, dpopProof, requestToken, type TokenResponse } from '../../src/client/oauth-client.js';
import { createTestStorage, PG_ADMIN_URL, REDIS_URL, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient } from '../support/sigil.js';
import { startTcpProxy, type CutMode, type TcpProxy } from '../support/tcp-proxy.js';
import { eventually, settlesWithin } from '../support/wait.js';
import { REQUEST_TIMEOUT_MS, send } from '../support/http.js';

/** a request that has not been answered in this long is a hang */
/** how long the server may take to notice a store went away or came back */
const RECOVERY_TIMEOUT_MS = 20_000;

/** requestToken with the same hard deadline, so a hanging token endpoint fails the test */
const timedToken = (req: Parameters<typeof requestToken>[0]): Promise<TokenResponse> => settlesWithin(requestToken(req), REQUEST_TIMEOUT_MS, 'the token request');

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || (u.protocol.startsWith('redis') ? 6379 : 5432)) };
}

describe('failing closed when storage is unreachable', () => {
  let storage: TestStorage;
  let pgProxy: TcpProxy;
  let redisProxy: TcpProxy;
  let server: ServerProcess;
  let admin: Admin;

  before(async () => {
    storage = await createTestStorage('failclosed');
    pgProxy = await startTcpProxy(hostPort(PG_ADMIN_URL));
    redisProxy = await startTcpProxy(hostPort(REDIS_URL));
    const databaseUrl = new URL(storage.databaseUrl);
    databaseUrl.hostname = pgProxy.host;
    databaseUrl.port = String(pgProxy.port);
    const redisUrl = new URL(storage.redisUrl);
    redisUrl.hostname = redisProxy.host;
    redisUrl.port = String(redisProxy.port);
    server = await startServer({ env: { DATABASE_URL: databaseUrl.toString(), REDIS_URL: redisUrl.toString(), REDIS_PREFIX: storage.redisPrefix } });
    admin = await bootstrapAdmin(server.url, server.issuer);
    assert.ok(pgProxy.acceptedConnections > 0, 'Sigil reaches Postgres through the proxy');
    assert.ok(redisProxy.acceptedConnections > 0, 'Sigil reaches Redis through the proxy');
  });
  after(async () => {
    await server?.stop();
    await pgProxy?.close();
    await redisProxy?.close();
    await storage?.cleanup();
  });

  function assertAlive(): void {
    assert.equal(server.child.exitCode, null, `the server process exited:\n${server.logs.slice(-30).join('\n')}`);
    assert.equal(server.child.signalCode, null, 'the server process was killed');
  }

  /** A token request that must be refused with 503 temporarily_unavailable: no token, no hang. */
  async function assertRefusedUnavailable(client: TestClient, what: string): Promise<void> {
    let status: number | undefined;
    let body: any;
    try {
      const token = await timedToken(tokenRequest(server.url, server.issuer, client));
      assert.fail(`${what}: a token was issued while storage is unreachable (${token.access_token.slice(0, 20)}...)`);
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      if (!('status' in (err as object))) throw err;
      status = (err as { status: number }).status;
      body = (err as { body: unknown }).body;
    }
    if (status !== 503) {
      const errors = server.logs.filter((l) => /"level":"(error|warn)"/.test(l)).slice(-5).join('\n');
      assert.fail(`${what}: expected 503 temporarily_unavailable, got ${status} ${JSON.stringify(body)}\nlast server errors:\n${errors}`);
    }
    assert.equal(body?.error, 'temporarily_unavailable', `${what}: ${JSON.stringify(body)}`);
    assert.equal(body?.access_token, undefined);
  }

  /** The JSON shape of that refusal, checked on a raw request (content type, no token). */
  async function assertRawRefusal(client: TestClient): Promise<void> {
    const res = await send(`${server.url}/token`, {
      method: 'POST',
      headers: {
        accept: 'text/html',
        'content-type': 'application/x-www-form-urlencoded',
        dpop: await dpopProof(client.dpopKey, 'POST', `${server.issuer}/token`),
      },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await clientAssertion(client.key, client.clientId, server.issuer),
      }),
    });
    assert.equal(res.status, 503, `expected 503, got ${res.status} ${res.text}`);
    assert.match(res.contentType ?? '', /^application\/json\b/);
    assert.equal(res.json?.error, 'temporarily_unavailable');
    assert.equal(res.json?.access_token, undefined);
  }

  async function readyStatus(): Promise<number> {
    return (await send(`${server.url}/ready`)).status;
  }

  const scenarios: Array<{ store: 'redis' | 'postgres'; mode: CutMode; label: string }> = [
    { store: 'redis', mode: 'refuse', label: 'Redis refuses connections' },
    { store: 'postgres', mode: 'refuse', label: 'Postgres refuses connections' },
    { store: 'redis', mode: 'hold', label: 'Redis accepts connections but never answers' },
    { store: 'postgres', mode: 'hold', label: 'Postgres accepts connections but never answers' },
    { store: 'redis', mode: 'blackhole', label: 'the link to Redis silently drops everything (partition)' },
    { store: 'postgres', mode: 'blackhole', label: 'the link to Postgres silently drops everything (partition)' },
  ];

  for (const { store, mode, label } of scenarios) {
    describe(`${label} (${store}, ${mode})`, () => {
      let proxy: TcpProxy;
      let warm: TestClient;
      let cold: TestClient;
      let cold2: TestClient;

      before(async () => {
        proxy = store === 'redis' ? redisProxy : pgProxy;
        // clients exist before the outage; `warm` has just been served (cached), `cold` has not
        warm = await createClient(admin, { name: `warm ${store} ${mode}` });
        cold = await createClient(admin, { name: `cold ${store} ${mode}` });
        cold2 = await createClient(admin, { name: `cold2 ${store} ${mode}` });
        await timedToken(tokenRequest(server.url, server.issuer, warm));
        assert.equal(await readyStatus(), 200, 'ready before the cut');
      });
      after(async () => {
        proxy?.restore();
        // leave a healthy server to the next scenario
        await eventually('ready after the scenario', async () => (await readyStatus()) === 200, { timeout: RECOVERY_TIMEOUT_MS });
      });

      it('refuses a token request sent right after the cut with 503 temporarily_unavailable', async () => {
        proxy.cut(mode);
        await assertRefusedUnavailable(cold, 'a client the server has not cached');
        assertAlive();
      });

      it('reports /ready 503 while /health stays 200', async () => {
        await eventually('/ready to report 503', async () => (await readyStatus()) === 503, { timeout: RECOVERY_TIMEOUT_MS });
        const ready = await send(`${server.url}/ready`);
        assert.equal(ready.status, 503);
        assert.match(ready.contentType ?? '', /^application\/json\b/);
        assert.equal(ready.json?.stores?.[store], 'down', ready.text);
        const health = await send(`${server.url}/health`);
        assert.equal(health.status, 200, health.text);
        assert.match(health.contentType ?? '', /^application\/json\b/);
        assertAlive();
      });

      it('refuses every client with 503 JSON while the store is down, cached or not', async () => {
        await assertRefusedUnavailable(warm, 'a client served just before the cut');
        await assertRefusedUnavailable(cold2, 'a client the server has not cached');
        await assertRawRefusal(warm);
        assertAlive();
      });

      it('serves again after the store comes back, without a restart', async () => {
        proxy.restore();
        await eventually('/ready to report 200', async () => (await readyStatus()) === 200, { timeout: RECOVERY_TIMEOUT_MS });
        const ready = await send(`${server.url}/ready`);
        assert.equal(ready.json?.stores?.[store], 'up', ready.text);
        const token = await eventually('a token after recovery', async () => timedToken(tokenRequest(server.url, server.issuer, cold)), { timeout: RECOVERY_TIMEOUT_MS });
        assert.equal(typeof token.access_token, 'string');
        assert.equal(token.token_type, 'DPoP');
        // the admin plane (Postgres and Redis behind it) works again too
        const fresh = await createClient(admin, { name: `after ${store} ${mode}` });
        assert.equal(typeof (await timedToken(tokenRequest(server.url, server.issuer, fresh))).access_token, 'string');
        assertAlive();
      });
    });
  }

  it('the process never exited and nothing went unhandled', () => {
    assertAlive();
    const started = server.logs.filter((l) => l.includes('sigil listening')).length;
    assert.equal(started, 1, 'the server was never restarted');
    const unhandled = server.logs.filter((l) => /unhandled|uncaught/i.test(l));
    assert.deepEqual(unhandled, [], 'no unhandled rejection or error was logged');
  });
});
