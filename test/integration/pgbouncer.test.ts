// Sigil unchanged behind PgBouncer in transaction pooling mode: two instances share 2 server
// connections per database through a real PgBouncer (its own, on a free loopback port). They start
// together on a fresh database, and every path that relies on Postgres serialising something still
// does: migrations, the one signing key, revocation, refresh-token rotation and reuse detection (the
// family lock), key rotation, registration-token uses. With Postgres down behind a PgBouncer that
// still accepts connections they answer 503, and serve again once it is back.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { clientAssertion, generateClientKey, requestToken, TokenError, type TokenResponse } from '../../src/client/oauth-client.js';
import { MIGRATIONS_DIR } from '../../src/storage/migrate.js';
import { refreshTokenHash } from '../../src/tokens/refresh-token-store.js';
import { ASSERTION_TYPE, untilReady, type RawResponse } from '../support/forge.js';
import { createTestStorage, PG_ADMIN_URL, type TestStorage } from '../support/infra.js';
import { startPgBouncer, type PgBouncer } from '../support/pgbouncer.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { adminSession, adminWithKey, bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient, rawTokenCall } from '../support/sigil.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { eventually } from '../support/wait.js';
import { send, type Answer } from '../support/http.js';

const TX = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
const ORDERS_API = 'https://orders.example';
const STOCK_API = 'https://stock.example';
/** a request not answered in this long is a hang */

const postgres = () => {
  const u = new URL(PG_ADMIN_URL);
  return { host: u.hostname, port: Number(u.port || 5432) };
};

async function migrationFiles(): Promise<string[]> {
  return (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_[\w-]+\.sql$/.test(f)).sort();
}

/** the files a server said it applied at start ('migrations applied' log line) */
function appliedBy(server: ServerProcess): string[] {
  return server.logs.flatMap((line) => {
    try {
      const entry = JSON.parse(line) as { msg?: string; migrations?: string[] };
      return entry.msg === 'migrations applied' ? (entry.migrations ?? []) : [];
    } catch {
      return [];
    }
  });
}

describe('Sigil behind PgBouncer (transaction pooling, 2 server connections)', () => {
  let storage: TestStorage;
  /** between PgBouncer and Postgres: cutting it is Postgres going down behind a PgBouncer that stays up */
  let upstream: TcpProxy;
  let pgb: PgBouncer;
  let a: ServerProcess;
  let b: ServerProcess;
  let issuer: string;
  let admin: Admin;
  let adminOnB: Admin;
  let gateway: TestClient;

  before(async () => {
    storage = await createTestStorage('pgbouncer');
    upstream = await startTcpProxy(postgres());
    // server_login_retry 1 s: PgBouncer tries Postgres again soon after it comes back
    pgb = await startPgBouncer({ upstream: { host: upstream.host, port: upstream.port }, poolSize: 2, settings: { server_login_retry: 1 } });
    const env = { DATABASE_URL: pgb.via(storage.databaseUrl), REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix };
    issuer = 'http://sigil-pgbouncer.test';
    // both start at once on an empty database: migrations and the first signing key race
    [a, b] = await Promise.all([startServer({ issuer, env }), startServer({ issuer, env })]);
    await Promise.all([untilReady(a.url), untilReady(b.url)]);
    admin = await bootstrapAdmin(a.url, issuer);
    adminOnB = adminWithKey(b.url, issuer, admin.key);
    gateway = await createClient(admin, { name: 'gateway', can_introspect: true });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await pgb?.close();
    await upstream?.close();
    await storage?.cleanup();
  });

  async function introspect(on: ServerProcess, token: string): Promise<Answer> {
    return send(`${on.url}/introspect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(gateway.key, gateway.clientId, issuer) }),
    });
  }

  const tokenCall = (on: ServerProcess, who: TestClient, params: Record<string, string>): Promise<RawResponse> => rawTokenCall(on, issuer, who, params);

  it('the two instances started together: each migration applied once, one signing key, through shared server connections', async () => {
    const files = await migrationFiles();
    const applied = [...appliedBy(a), ...appliedBy(b)];
    assert.deepEqual([...applied].sort(), files, `each file applied by exactly one instance: ${JSON.stringify(applied)}`);
    const rows = await storage.sql<{ version: string }>('SELECT version FROM schema_migrations ORDER BY applied_at, version');
    assert.deepEqual(rows.map((r) => r.version), files);
    const keys = await storage.sql<{ kid: string }>('SELECT kid FROM signing_keys');
    assert.equal(keys.length, 1, 'one signing key, created by one of the instances');
    for (const s of [a, b]) {
      const jwks = (await send(`${s.url}/jwks`)).body as { keys: Array<{ kid: string }> };
      assert.deepEqual(jwks.keys.map((k) => k.kid), [keys[0]!.kid]);
    }
    // really pooled: both instances' clients share at most 2 server connections
    const database = new URL(storage.databaseUrl).pathname.slice(1);
    const clients = (await pgb.admin<{ database: string }>('SHOW CLIENTS')).filter((c) => c.database === database);
    const servers = (await pgb.admin<{ database: string }>('SHOW SERVERS')).filter((c) => c.database === database);
    assert.ok(clients.length >= 2, `PgBouncer clients for ${database}: ${clients.length}`);
    assert.ok(servers.length >= 1 && servers.length <= 2, `server connections for ${database}: ${servers.length}`);
  });

  it('issues tokens on both instances; a client revoked on A is refused on B', async () => {
    const client = await createClient(admin, { name: 'revoked through pgbouncer' });
    const onA = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    const onB = (await requestToken(tokenRequest(b.url, issuer, client))).access_token;
    for (const t of [onA, onB]) assert.equal((await introspect(b, t)).body?.active, true);

    const res = await admin.call('POST', `/admin/clients/${client.clientId}/revoke`, { reason: 'pgbouncer test' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await eventually('B refuses the revoked client a token (401 invalid_client)', async () => {
      try {
        await requestToken(tokenRequest(b.url, issuer, client));
        return false;
      } catch (err) {
        return err instanceof TokenError && err.status === 401 && err.body.error === 'invalid_client';
      }
    });
    for (const t of [onA, onB]) {
      await eventually('B: the revoked client\'s token introspects inactive', async () => (await introspect(b, t)).body?.active === false);
    }
  });

  it('token exchange and refresh rotation across instances; a reused refresh token revokes its family', async () => {
    const front = await createClient(admin, { name: 'front', scope: 'orders:read', audiences: [ORDERS_API] });
    const holder = await createClient(admin, {
      name: 'orders service', scope: 'orders:read stock:read', audiences: [STOCK_API], serves: [ORDERS_API], grant_types: ['client_credentials', TX, 'refresh_token'],
    });
    const startFamily = async () => {
      const subject = (await requestToken(tokenRequest(a.url, issuer, front))).access_token;
      const res = await tokenCall(b, holder, { grant_type: TX, subject_token: subject, subject_token_type: AT });
      assert.equal(res.status, 200, `exchange: ${res.text}`);
      assert.equal(typeof res.body.refresh_token, 'string');
      return res.body as TokenResponse & { refresh_token: string };
    };
    const refresh = (on: ServerProcess, token: string) => tokenCall(on, holder, { grant_type: 'refresh_token', refresh_token: token });

    // sequential: rotate on A, rotate on B, reuse the first on A
    const first = await startFamily();
    const r1 = await refresh(a, first.refresh_token);
    assert.equal(r1.status, 200, r1.text);
    const r2 = await refresh(b, r1.body.refresh_token);
    assert.equal(r2.status, 200, r2.text);
    const reuse = await refresh(a, first.refresh_token);
    assert.equal(reuse.status, 400, reuse.text);
    assert.equal(reuse.body.error, 'invalid_grant');
    // B hears of the revocation within a second (CONTRACT.md); then the newest one is refused there too
    await eventually('B: the family\'s access tokens introspect inactive', async () => (await introspect(b, r2.body.access_token)).body?.active === false);
    const afterReuse = await refresh(b, r2.body.refresh_token);
    assert.equal(afterReuse.status, 400, `the newest refresh token of a reused family: ${afterReuse.text}`);
    assert.equal(afterReuse.body.error, 'invalid_grant');

    // concurrent: one refresh token presented 6 times at once on both instances
    const second = await startFamily();
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => refresh(i % 2 ? b : a, second.refresh_token)));
    const statuses = answers.map((x) => x.status);
    assert.equal(statuses.filter((s) => s === 200).length, 1, `exactly one rotation succeeds: ${statuses.join(',')}`);
    for (const x of answers.filter((r) => r.status !== 200)) {
      assert.equal(x.status, 400, x.text);
      assert.equal(x.body.error, 'invalid_grant', x.text);
    }
    const winner = answers.find((x) => x.status === 200)!;
    await eventually('A: the winner\'s access token introspects inactive', async () => (await introspect(a, winner.body.access_token)).body?.active === false);
    const successor = await refresh(a, winner.body.refresh_token);
    assert.equal(successor.status, 400, `the family was revoked for the reuse: ${successor.text}`);
    const rows = await storage.sql<{ n: number }>(
      'SELECT count(*)::int AS n FROM refresh_tokens WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)',
      [refreshTokenHash(second.refresh_token)],
    );
    assert.equal(rows[0]!.n, 2, 'the family holds the first token and one successor, no more');
  });

  it('key rotation through the admin API: concurrent rotations on A and B stage exactly one key, both publish it', async () => {
    // admin tokens first, so the rotations themselves reach the servers together
    const callers = await Promise.all([a, b, a, b].map((s) => adminSession(s.url, issuer, admin.key)));
    const answers = await Promise.all(callers.map((call) => call('POST', '/admin/keys/rotate')));
    assert.deepEqual(answers.map((x) => x.status).sort(), [201, 409, 409, 409], JSON.stringify(answers.map((x) => x.body)));
    const staged = answers.find((x) => x.status === 201)!.body.staged as { kid: string; state: string };
    assert.equal(staged.state, 'next');
    const pending = await storage.sql<{ kid: string }>('SELECT kid FROM signing_keys WHERE activate_at > now()');
    assert.deepEqual(pending.map((k) => k.kid), [staged.kid]);
    for (const s of [a, b]) {
      await eventually(`${s.url} publishes the staged key`, async () => ((await send(`${s.url}/jwks`)).body as { keys: Array<{ kid: string }> }).keys.some((k) => k.kid === staged.kid));
    }
    const listed = await adminOnB.call('GET', '/admin/keys');
    assert.equal(listed.status, 200);
    assert.equal((listed.body as Array<{ kid: string; state: string }>).find((k) => k.kid === staged.kid)?.state, 'next');
  });

  it('a registration token with uses 3: exactly 3 of 10 concurrent registrations on both instances succeed', async () => {
    const created = await admin.call('POST', '/admin/registration-tokens', { uses: 3, scope: 'orders:read', audiences: [ORDERS_API] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const token = created.body.token as string;
    const keys = await Promise.all(Array.from({ length: 10 }, () => generateClientKey('ES256')));
    const answers = await Promise.all(
      keys.map((k, i) =>
        send(`${i % 2 ? b.url : a.url}/register`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ client_name: `partner ${i}`, jwks: k.publicJwks }),
        }),
      ),
    );
    const statuses = answers.map((x) => x.status);
    assert.equal(statuses.filter((s) => s === 201).length, 3, `statuses: ${statuses.join(',')}`);
    assert.equal(statuses.filter((s) => s === 401).length, 7, `statuses: ${statuses.join(',')}`);
    const [row] = await storage.sql<{ uses_left: number }>('SELECT uses_left FROM initial_access_tokens WHERE id = $1', [created.body.id]);
    assert.equal(row!.uses_left, 0);
  });

  it('Postgres down behind PgBouncer: 503 temporarily_unavailable (never a 500 or a hang), /ready 503, then serves again', async () => {
    const cold = await createClient(admin, { name: 'cold' });
    const warm = await createClient(admin, { name: 'warm' });
    await requestToken(tokenRequest(a.url, issuer, warm));
    upstream.cut('refuse');
    try {
      const outcomes: Array<{ what: string; status: number; body: unknown }> = [];
      const attempt = async (what: string, on: ServerProcess, client: TestClient) => {
        try {
          const t = await requestToken(tokenRequest(on.url, issuer, client));
          assert.fail(`${what}: a token was issued while Postgres is down (${t.access_token.slice(0, 12)}...)`);
        } catch (err) {
          if (!(err instanceof TokenError)) throw err;
          outcomes.push({ what, status: err.status, body: err.body });
        }
      };
      // right after the cut (before /ready notices), then once it has
      await Promise.all([attempt('A, a client it never served', a, cold), attempt('B, a client it never served', b, warm)]);
      for (const s of [a, b]) await eventually(`${s.url}/ready reports 503`, async () => (await send(`${s.url}/ready`)).status === 503, { timeout: 20_000 });
      await Promise.all([attempt('A, cached client', a, warm), attempt('B, cold client', b, cold)]);
      const registration = await send(`${b.url}/register`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sit_x.y' }, body: '{}' });
      outcomes.push({ what: 'B /register', status: registration.status, body: registration.body });
      for (const o of outcomes) {
        assert.equal(o.status, 503, `${o.what}: ${JSON.stringify(o.body)}`);
        assert.equal((o.body as { error?: string }).error, 'temporarily_unavailable', `${o.what}: ${JSON.stringify(o.body)}`);
      }
    } finally {
      upstream.restore();
    }
    for (const s of [a, b]) {
      await eventually(`${s.url}/ready reports 200 again`, async () => (await send(`${s.url}/ready`)).status === 200, { timeout: 20_000 });
      const token = await eventually('a token after Postgres is back', async () => requestToken(tokenRequest(s.url, issuer, cold)), { timeout: 20_000 });
      assert.equal(token.token_type, 'DPoP');
    }
    for (const s of [a, b]) {
      assert.equal(s.child.exitCode, null, 'the server process is alive');
      assert.deepEqual(s.logs.filter((l) => /unexpected error|unhandled|uncaught/i.test(l)), [], 'no unexpected error was logged');
    }
  });
});

describe('DATABASE_DIRECT_URL: migrations over a direct connection, everything else through PgBouncer', () => {
  let storage: TestStorage;
  let direct: TcpProxy;
  let pgb: PgBouncer;
  let server: ServerProcess;

  before(async () => {
    storage = await createTestStorage('pgbdirect');
    // the direct connection goes through a proxy of its own, so the test sees what uses it
    direct = await startTcpProxy(postgres());
    pgb = await startPgBouncer({ upstream: postgres() });
    const directUrl = new URL(storage.databaseUrl);
    directUrl.hostname = direct.host;
    directUrl.port = String(direct.port);
    server = await startServer({
      env: { DATABASE_URL: pgb.via(storage.databaseUrl), DATABASE_DIRECT_URL: directUrl.toString(), REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix },
    });
  });
  after(async () => {
    await server?.stop();
    await pgb?.close();
    await direct?.close();
    await storage?.cleanup();
  });

  it('applies the migrations over DATABASE_DIRECT_URL and closes that connection; serves through PgBouncer', async () => {
    const files = await migrationFiles();
    assert.deepEqual(appliedBy(server), files);
    assert.ok(direct.acceptedConnections > 0, 'the migrations used the direct connection');
    await eventually('the direct connection is closed after the migrations', async () => direct.openConnections === 0);
    const before = direct.acceptedConnections;
    const admin = await bootstrapAdmin(server.url, server.issuer);
    const client = await createClient(admin);
    assert.equal((await requestToken(tokenRequest(server.url, server.issuer, client))).token_type, 'DPoP');
    assert.equal(direct.acceptedConnections, before, 'nothing but the migrations uses the direct connection');
  });
});
