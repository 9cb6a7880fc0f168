// The storage contract every SQL backend must honour. dbContract() registers the same test bodies
// for one backend; db-contract-postgres.test.ts and db-contract-pglite.test.ts run it for each.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AdapterPayload } from 'oidc-provider';
import { loadSigningKeys, readKeys, sharedSecret } from '../../src/keys/signing-keys.js';
import { KeyDecryptionError } from '../../src/keys/key-encryption.js';

const KEK = Buffer.alloc(32, 3);
import { ClientStore } from '../../src/clients/client-store.js';
import type { Db } from '../../src/storage/db.js';
import { createMemoryStore, createRedisStore, type FastStore } from '../../src/storage/fast-store.js';
import { migrate, MIGRATIONS_DIR } from '../../src/storage/migrate.js';
import { oidcAdapterFactory } from '../../src/oidc/adapter.js';
import { ReplayClaims } from '../../src/oidc/replay-claims.js';
import { sqlReplayGuard } from '../../src/storage/replay-guard.js';
import { TokenEventLog, type TokenEvent } from '../../src/tokens/token-events.js';
import { sampleClient, silentLog, testRedisPrefix, type MakeDb, type TestDb } from './helpers.js';
import { eventually } from '../support/wait.js';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

async function migrationFiles(): Promise<string[]> {
  return (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_[\w-]+\.sql$/.test(f)).sort();
}

/** a fresh database of the backend for one describe block, removed afterwards */
function freshDb(makeDb: MakeDb, { migrated = true } = {}) {
  const ctx = {} as { t: TestDb };
  before(async () => {
    ctx.t = await makeDb();
    if (migrated) await migrate(ctx.t.db);
  });
  after(async () => {
    await ctx.t?.cleanup();
  });
  return ctx;
}

/** Wraps a real Db, counting the calls that reach it (instrumentation, not a mock: every call goes through). */
function counting(db: Db): { db: Db; calls: string[] } {
  const calls: string[] = [];
  const wrapped: Db = {
    kind: db.kind,
    query: (t, p) => {
      calls.push(`query:${t.trim().split(/\s+/)[0]}`);
      return db.query(t, p);
    },
    exec: (s) => {
      calls.push('exec');
      return db.exec(s);
    },
    transaction: (fn) => {
      calls.push('transaction');
      return db.transaction(fn);
    },
    lockedTransaction: (k, fn) => {
      calls.push('lockedTransaction');
      return db.lockedTransaction(k, fn);
    },
    ping: () => db.ping(),
    close: () => db.close(),
  };
  return { db: wrapped, calls };
}

function event(i: number, over: Partial<TokenEvent> = {}): TokenEvent {
  return {
    at: new Date(Date.UTC(2030, 0, 1, 0, 0, 0, i)),
    outcome: 'issued',
    grantType: 'client_credentials',
    clientId: 'c1',
    jti: `jti-${i}`,
    expiresAt: new Date(Date.UTC(2030, 0, 1, 0, 5, 0)),
    requestId: `req-${i}`,
    ...over,
  };
}

export function dbContract(name: string, makeDb: MakeDb): void {
  describe(`${name}: migrate()`, () => {
    const ctx = freshDb(makeDb, { migrated: false });

    it('applies every migrations/*.sql in order and records each in schema_migrations', async () => {
      const files = await migrationFiles();
      assert.ok(files.length > 0);
      const applied = await migrate(ctx.t.db);
      assert.deepEqual(applied, files);
      const rows = await ctx.t.sql<{ version: string; applied_at: Date }>('SELECT version, applied_at FROM schema_migrations ORDER BY version');
      assert.deepEqual(rows.map((r) => r.version), files);
      for (const r of rows) assert.ok(r.applied_at instanceof Date);
      const tables = await ctx.t.sql<{ table_name: string }>(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
      );
      const names = tables.map((r) => r.table_name);
      for (const t of ['clients', 'signing_keys', 'server_secrets', 'oidc_models', 'replay_records', 'token_events', 'audit_log']) {
        assert.ok(names.includes(t), `table ${t} exists`);
      }
    });

    it('is idempotent: a second run applies nothing and records nothing twice', async () => {
      const files = await migrationFiles();
      assert.deepEqual(await migrate(ctx.t.db), []);
      assert.deepEqual(await migrate(ctx.t.db), []);
      const rows = await ctx.t.sql<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
      assert.equal(rows[0]!.n, files.length);
    });

    it('a failing migration is rolled back, not recorded, stops the run and names the file', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'sigil-migrations-'));
      try {
        await writeFile(path.join(dir, '900_ok.sql'), 'CREATE TABLE mig_ok (id int PRIMARY KEY);\nINSERT INTO mig_ok VALUES (1);');
        await writeFile(path.join(dir, '901_bad.sql'), 'CREATE TABLE mig_bad (id int);\nINSERT INTO mig_bad VALUES (1);\nSELECT * FROM no_such_table;');
        await writeFile(path.join(dir, '902_after.sql'), 'CREATE TABLE mig_after (id int);');
        await writeFile(path.join(dir, 'README.md'), 'not a migration');
        await assert.rejects(migrate(ctx.t.db, dir), (err: Error) => {
          assert.match(err.message, /migration 901_bad\.sql failed/);
          return true;
        });
        const versions = (await ctx.t.sql<{ version: string }>('SELECT version FROM schema_migrations')).map((r) => r.version);
        assert.ok(versions.includes('900_ok.sql'));
        assert.ok(!versions.includes('901_bad.sql'));
        assert.ok(!versions.includes('902_after.sql'));
        const exists = async (t: string) =>
          (await ctx.t.sql<{ n: number }>("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name = $1", [t]))[0]!.n === 1;
        assert.equal(await exists('mig_ok'), true);
        assert.equal(await exists('mig_bad'), false, 'the failed migration left nothing behind');
        assert.equal(await exists('mig_after'), false);
        // the connection is usable afterwards (no transaction left open/aborted)
        assert.equal((await ctx.t.db.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
        // fixing the file lets the next run continue where it stopped
        await writeFile(path.join(dir, '901_bad.sql'), 'CREATE TABLE mig_bad (id int);');
        assert.deepEqual(await migrate(ctx.t.db, dir), ['901_bad.sql', '902_after.sql']);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe(`${name}: query, exec and transaction semantics`, () => {
    const ctx = freshDb(makeDb, { migrated: false });

    it('exec() runs a script of several statements', async () => {
      await ctx.t.db.exec(`
        CREATE TABLE qt (id int PRIMARY KEY, label text, tags text[], doc jsonb, n bigint);
        INSERT INTO qt (id, label) VALUES (1, 'one');
        INSERT INTO qt (id, label) VALUES (2, 'two');
        UPDATE qt SET label = 'uno' WHERE id = 1;
      `);
      const r = await ctx.t.db.query<{ id: number; label: string }>('SELECT id, label FROM qt ORDER BY id');
      assert.deepEqual(r.rows, [{ id: 1, label: 'uno' }, { id: 2, label: 'two' }]);
    });

    it('query() binds parameters as values, never as SQL', async () => {
      const hostile = "x'); DROP TABLE qt; --";
      await ctx.t.db.query('INSERT INTO qt (id, label, tags, doc, n) VALUES ($1, $2, $3, $4, $5)', [3, hostile, ['a', 'b c', 'd"e'], JSON.stringify({ k: [1, 'two'] }), 9007199254740991]);
      const r = await ctx.t.db.query<{ label: string; tags: string[]; doc: unknown; n: number }>('SELECT label, tags, doc, n FROM qt WHERE id = $1', [3]);
      assert.deepEqual(r.rows, [{ label: hostile, tags: ['a', 'b c', 'd"e'], doc: { k: [1, 'two'] }, n: 9007199254740991 }]);
      const types = await ctx.t.db.query<{ t: string | null; i: number; b: boolean; c: number }>(
        'SELECT $1::text AS t, $2::int AS i, $3::boolean AS b, (SELECT count(*) FROM qt) AS c',
        [null, 42, true],
      );
      assert.deepEqual(types.rows, [{ t: null, i: 42, b: true, c: 3 }], 'count(*) (int8) comes back as a JS number');
    });

    it('rowCount is the number of rows written by INSERT/UPDATE/DELETE', async () => {
      const ins = await ctx.t.db.query("INSERT INTO qt (id, label) VALUES (10, 'a'), (11, 'b'), (12, 'c')");
      assert.equal(ins.rowCount, 3);
      const none = await ctx.t.db.query("INSERT INTO qt (id, label) VALUES (10, 'a') ON CONFLICT DO NOTHING RETURNING id");
      assert.equal(none.rowCount, 0);
      const upd = await ctx.t.db.query("UPDATE qt SET label = 'z' WHERE id >= 10 RETURNING id");
      assert.equal(upd.rowCount, 3);
      const del = await ctx.t.db.query('DELETE FROM qt WHERE id IN (11, 12)');
      assert.equal(del.rowCount, 2);
    });

    it('rowCount of a SELECT is the number of rows returned (as with pg)', async () => {
      const r = await ctx.t.db.query('SELECT id FROM qt WHERE id IN (1, 2, 3)');
      assert.equal(r.rows.length, 3);
      assert.equal(r.rowCount, 3, 'loadSigningKeys() relies on rowCount of a SELECT');
    });

    it('transaction() commits and returns the value of fn', async () => {
      const v = await ctx.t.db.transaction(async (tx) => {
        await tx.query("INSERT INTO qt (id, label) VALUES (20, 'tx')");
        const seen = await tx.query<{ label: string }>('SELECT label FROM qt WHERE id = 20');
        assert.equal(seen.rows[0]?.label, 'tx', 'a transaction sees its own writes');
        return 'done';
      });
      assert.equal(v, 'done');
      assert.equal((await ctx.t.db.query('SELECT 1 FROM qt WHERE id = 20')).rows.length, 1);
    });

    it('transaction() rolls back every write when fn throws, and rethrows that error', async () => {
      const boom = new Error('boom');
      await assert.rejects(
        ctx.t.db.transaction(async (tx) => {
          await tx.query("INSERT INTO qt (id, label) VALUES (21, 'gone')");
          await tx.exec("INSERT INTO qt (id, label) VALUES (22, 'gone'); UPDATE qt SET label = 'changed' WHERE id = 1;");
          throw boom;
        }),
        (err) => err === boom,
      );
      assert.equal((await ctx.t.db.query('SELECT 1 FROM qt WHERE id IN (21, 22)')).rows.length, 0);
      assert.equal((await ctx.t.db.query<{ label: string }>('SELECT label FROM qt WHERE id = 1')).rows[0]!.label, 'uno');
    });

    it('transaction() rolls back when a statement fails, and the database stays usable', async () => {
      await assert.rejects(
        ctx.t.db.transaction(async (tx) => {
          await tx.query("INSERT INTO qt (id, label) VALUES (23, 'gone')");
          await tx.query("INSERT INTO qt (id, label) VALUES (1, 'duplicate')");
        }),
        (err: { code?: string }) => err.code === '23505',
      );
      assert.equal((await ctx.t.db.query('SELECT 1 FROM qt WHERE id = 23')).rows.length, 0);
      // many rolled-back transactions in a row leave no connection stuck in a transaction
      for (let i = 0; i < 15; i++) {
        await assert.rejects(ctx.t.db.transaction(async () => {
          throw new Error(`x${i}`);
        }));
      }
      await ctx.t.db.transaction(async (tx) => {
        await tx.query("INSERT INTO qt (id, label) VALUES (24, 'after')");
      });
      assert.equal((await ctx.t.db.query('SELECT 1 FROM qt WHERE id = 24')).rows.length, 1);
    });

    it('a failed query rejects with the database error (not swallowed)', async () => {
      await assert.rejects(ctx.t.db.query('SELECT * FROM no_such_table'), (err: { code?: string }) => err.code === '42P01');
      await assert.rejects(ctx.t.db.exec('SELECT 1; SELECT * FROM no_such_table;'), (err: { code?: string }) => err.code === '42P01');
    });

    it('ping() resolves', async () => {
      await ctx.t.db.ping();
    });

    it('lockedTransaction() runs fn and returns its value', async () => {
      const v = await ctx.t.db.lockedTransaction(4242, async (q) => (await q.query<{ v: number }>('SELECT 7 AS v')).rows[0]!.v);
      assert.equal(v, 7);
    });

    it('lockedTransaction() never lets two holders of the same key overlap', async () => {
      let inside = 0;
      let maxInside = 0;
      const hold = (db: Db) =>
        db.lockedTransaction(4243, async (q) => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          // yield to the event loop (and the database) while holding the lock, long enough that
          // holders without it would overlap (PGlite runs one transaction at a time anyway)
          for (let i = 0; i < 5; i++) await q.query(db.kind === 'postgres' ? 'SELECT pg_sleep(0.01)' : 'SELECT 1');
          inside--;
        });
      await Promise.all([hold(ctx.t.db), hold(ctx.t.db), hold(ctx.t.second()), hold(ctx.t.second())]);
      assert.equal(maxInside, 1, 'fn bodies holding the same advisory lock ran concurrently');
    });

    it('lockedTransaction() is one transaction: a throw rolls it back, and the lock ends with it', async () => {
      const boom = new Error('boom');
      await assert.rejects(
        ctx.t.db.lockedTransaction(4244, async (q) => {
          await q.query("INSERT INTO qt (id, label) VALUES (30, 'gone')");
          throw boom;
        }),
        (err) => err === boom,
      );
      assert.equal((await ctx.t.db.query('SELECT 1 FROM qt WHERE id = 30')).rows.length, 0);
      await ctx.t.db.lockedTransaction(4244, async (q) => q.query("INSERT INTO qt (id, label) VALUES (31, 'kept')"));
      assert.equal((await ctx.t.db.query('SELECT 1 FROM qt WHERE id = 31')).rows.length, 1);
      // no session keeps the lock afterwards: another handle takes it without waiting
      const free = await ctx.t.second().transaction(async (tx) => (await tx.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(4244) AS ok')).rows[0]!.ok);
      assert.equal(free, true, 'the advisory lock outlived its transaction');
    });
  });

  describe(`${name}: sqlReplayGuard shares claims between handles on one database`, () => {
    const ctx = freshDb(makeDb);

    it('a claim made through one handle is seen through another', async () => {
      const a = sqlReplayGuard(ctx.t.db);
      const b = sqlReplayGuard(ctx.t.second());
      try {
        const shared = { id: 'shared-1', iat: () => undefined };
        assert.equal(await a.claim('client', shared, 60), 'free');
        assert.equal(await b.claim('client', shared, 60), 'replayed');
        assert.equal(await a.claim('client', shared, 60), 'replayed');
        const rows = await ctx.t.sql<{ id: string }>("SELECT id FROM replay_records WHERE id = 'shared-1'");
        assert.equal(rows.length, 1);
      } finally {
        a.close();
        b.close();
      }
    });
  });

  describe(`${name}: ClientStore`, () => {
    const ctx = freshDb(makeDb);
    let bus: FastStore;
    let store: ClientStore;
    before(() => {
      bus = createMemoryStore();
      store = new ClientStore(ctx.t.db, bus);
    });
    after(async () => {
      await bus?.close();
    });

    it('create() stores every field and returns the record; read()/find() return the same', async () => {
      const input = sampleClient('orders-svc', { canIntrospect: true, serves: ['https://api.example.com/orders'], grantTypes: ['client_credentials', 'refresh_token'] });
      const created = await store.create(input);
      assert.ok(created);
      assert.equal(created.clientId, 'orders-svc');
      assert.equal(created.status, 'active');
      assert.deepEqual(created.scope, input.scope);
      assert.deepEqual(created.audiences, input.audiences);
      assert.deepEqual(created.serves, input.serves);
      assert.deepEqual(created.grantTypes, input.grantTypes);
      assert.equal(created.dpopRequired, true);
      assert.equal(created.canIntrospect, true);
      assert.equal(created.isAdmin, false);
      assert.deepEqual(created.jwks, input.jwks);
      assert.equal(created.jwksUri, undefined);
      assert.ok(created.createdAt instanceof Date && !Number.isNaN(created.createdAt.getTime()));
      assert.ok(created.updatedAt instanceof Date);
      assert.equal(created.revokedAt, undefined);
      assert.deepEqual(await store.read('orders-svc'), created);
      assert.deepEqual(await store.find('orders-svc'), created);
    });

    it('round-trips an empty scope, a jwks_uri client and odd characters', async () => {
      const created = await store.create(sampleClient('uri-client', {
        name: "O'Brien \"quoted\" ✓", scope: [], audiences: [], jwks: undefined, jwksUri: 'https://keys.example.com/jwks.json', dpopRequired: false,
      }));
      assert.ok(created);
      const read = await store.read('uri-client');
      assert.equal(read?.name, "O'Brien \"quoted\" ✓");
      assert.deepEqual(read?.scope, []);
      assert.deepEqual(read?.audiences, []);
      assert.equal(read?.jwks, undefined);
      assert.equal(read?.jwksUri, 'https://keys.example.com/jwks.json');
      assert.equal(read?.dpopRequired, false);
    });

    it('unknown ids are undefined for read() and find()', async () => {
      assert.equal(await store.read('nobody'), undefined);
      assert.equal(await store.find('nobody'), undefined);
    });

    it('create() with an id that exists returns undefined and changes nothing', async () => {
      const again = await store.create(sampleClient('orders-svc', { name: 'impostor' }));
      assert.equal(again, undefined);
      assert.equal((await store.read('orders-svc'))?.name, 'client orders-svc');
    });

    it('there is at most one admin: a second is_admin client returns undefined', async () => {
      const admin = await store.create(sampleClient('sigil-admin', { isAdmin: true, scope: ['sigil:admin'] }));
      assert.ok(admin?.isAdmin);
      assert.equal(await store.create(sampleClient('second-admin', { isAdmin: true })), undefined);
      assert.equal(await store.read('second-admin'), undefined);
      assert.equal((await store.findAdmin())?.clientId, 'sigil-admin');
    });

    it('list() returns every client', async () => {
      const ids = (await store.list()).map((c) => c.clientId).sort();
      assert.deepEqual(ids, ['orders-svc', 'sigil-admin', 'uri-client']);
    });

    it('create() inside a rolled-back transaction leaves nothing', async () => {
      await assert.rejects(ctx.t.db.transaction(async (tx) => {
        assert.ok(await store.create(sampleClient('tx-client'), tx));
        throw new Error('abort');
      }));
      assert.equal(await store.read('tx-client'), undefined);
    });

    it('find() serves from its cache; changed() makes this instance re-read', async () => {
      assert.equal((await store.find('orders-svc'))?.name, 'client orders-svc');
      await ctx.t.sql("UPDATE clients SET name = 'renamed' WHERE client_id = 'orders-svc'");
      assert.equal((await store.find('orders-svc'))?.name, 'client orders-svc', 'cached until told');
      assert.equal((await store.read('orders-svc'))?.name, 'renamed', 'read() bypasses the cache');
      await store.changed('orders-svc');
      assert.equal((await store.find('orders-svc'))?.name, 'renamed');
    });

    it('a negative find() is dropped by changed() too (a client created elsewhere becomes visible)', async () => {
      assert.equal(await store.find('late-client'), undefined);
      await ctx.t.sql(
        "INSERT INTO clients (client_id, name, grant_types, jwks_uri) VALUES ('late-client', 'late', '{client_credentials}', 'https://k.example/jwks')",
      );
      await store.changed('late-client');
      assert.equal((await store.find('late-client'))?.name, 'late');
    });
  });

  describe(`${name}: ClientStore cache invalidation across instances (Redis bus)`, () => {
    const ctx = freshDb(makeDb);
    const redis = testRedisPrefix('cs');
    let busA: FastStore;
    let busB: FastStore;
    let a: ClientStore;
    let b: ClientStore;
    before(() => {
      busA = createRedisStore(redis.url, redis.prefix, silentLog);
      busB = createRedisStore(redis.url, redis.prefix, silentLog);
      a = new ClientStore(ctx.t.db, busA);
      b = new ClientStore(ctx.t.second(), busB);
    });
    after(async () => {
      await busA?.close();
      await busB?.close();
      await redis.cleanup();
    });

    it("after A changes a row and calls A.changed(id), B's find() returns the new data", async () => {
      await eventually('both Redis stores ready', () => busA.isReady() && busB.isReady());
      // B's subscription is made asynchronously: probe the channel until B hears A
      let heard = false;
      busB.subscribe('client', (m) => {
        if (m === 'probe-no-such-client') heard = true;
      });
      await eventually('B is subscribed to client events', async () => {
        await busA.publish('client', 'probe-no-such-client');
        return heard;
      });
      assert.ok(await a.create(sampleClient('svc-x', { name: 'v1' })));
      // B's cache may hold the entry only after the create event; prime it with the current row
      await eventually('B sees the created client', async () => (await b.find('svc-x'))?.name === 'v1');
      for (let v = 2; v <= 4; v++) {
        await ctx.t.sql('UPDATE clients SET name = $1, scope = $2 WHERE client_id = $3', [`v${v}`, `s${v}`, 'svc-x']);
        assert.equal((await b.find('svc-x'))?.name, `v${v - 1}`, 'B serves its cached copy until told');
        await a.changed('svc-x');
        // well inside the 5 s cache lifetime, so only the bus message can explain the refresh
        const fresh = await eventually(`B sees v${v}`, async () => {
          const r = await b.find('svc-x');
          return r?.name === `v${v}` ? r : undefined;
        }, { timeout: 3000 });
        assert.deepEqual(fresh.scope, [`s${v}`]);
      }
    });

    it('a revocation written by A is seen by B', async () => {
      await ctx.t.sql("UPDATE clients SET status = 'revoked', revoked_at = now(), revoked_by = 'admin', revoked_reason = 'leak' WHERE client_id = 'svc-x'");
      await a.changed('svc-x');
      const r = await eventually('B sees the revocation', async () => {
        const c = await b.find('svc-x');
        return c?.status === 'revoked' ? c : undefined;
      }, { timeout: 3000 });
      assert.equal(r.revokedBy, 'admin');
      assert.equal(r.revokedReason, 'leak');
      assert.ok(r.revokedAt instanceof Date);
    });
  });

  describe(`${name}: TokenEventLog`, () => {
    const ctx = freshDb(makeDb);

    async function stored(prefix: string) {
      return ctx.t.sql<{ at: Date; outcome: string; grant_type: string | null; client_id: string | null; jti: string; expires_at: Date | null; error: string | null; reason: string | null; request_id: string | null }>(
        'SELECT at, outcome, grant_type, client_id, jti, expires_at, error, reason, request_id FROM token_events WHERE jti LIKE $1 ORDER BY id',
        [`${prefix}%`],
      );
    }

    it('record() never touches the database; flush() writes everything buffered in one batch', async () => {
      const { db, calls } = counting(ctx.t.db);
      const log = new TokenEventLog(db, silentLog, { intervalMs: 3_600_000 });
      try {
        for (let i = 0; i < 5; i++) log.record(event(i, { jti: `one-batch-${i}` }));
        log.record({ at: new Date(Date.UTC(2030, 0, 1)), outcome: 'refused', clientId: 'c2', jti: 'one-batch-r', error: 'invalid_client', reason: 'bad assertion', requestId: 'rq' });
        assert.equal(log.pending, 6);
        assert.deepEqual(calls, [], 'record() made no database call');
        await log.flush();
        assert.equal(calls.length, 1, `one statement for the whole batch, got ${calls.join(', ')}`);
        assert.equal(log.pending, 0);
        const rows = await stored('one-batch-');
        assert.equal(rows.length, 6);
        assert.deepEqual(rows.map((r) => r.jti), ['one-batch-0', 'one-batch-1', 'one-batch-2', 'one-batch-3', 'one-batch-4', 'one-batch-r']);
        const first = rows[0]!;
        assert.equal(first.outcome, 'issued');
        assert.equal(first.grant_type, 'client_credentials');
        assert.equal(first.client_id, 'c1');
        assert.equal(new Date(first.at).toISOString(), '2030-01-01T00:00:00.000Z');
        assert.equal(new Date(first.expires_at!).toISOString(), '2030-01-01T00:05:00.000Z');
        assert.equal(first.request_id, 'req-0');
        assert.equal(first.error, null);
        const refused = rows[5]!;
        assert.equal(refused.outcome, 'refused');
        assert.equal(refused.grant_type, null);
        assert.equal(refused.expires_at, null);
        assert.equal(refused.error, 'invalid_client');
        assert.equal(refused.reason, 'bad assertion');
        // nothing buffered: nothing sent
        await log.flush();
        assert.equal(calls.length, 1);
      } finally {
        await log.close();
      }
    });

    it('concurrent flush() calls write each event exactly once', async () => {
      const log = new TokenEventLog(ctx.t.db, silentLog, { intervalMs: 3_600_000 });
      try {
        for (let i = 0; i < 20; i++) log.record(event(i, { jti: `conc-${i}` }));
        await Promise.all([log.flush(), log.flush(), log.flush()]);
        log.record(event(20, { jti: 'conc-20' }));
        await Promise.all([log.flush(), log.flush()]);
        assert.equal(log.pending, 0);
        assert.equal((await stored('conc-')).length, 21);
      } finally {
        await log.close();
      }
    });

    it('flush() writes everything buffered, even more than one batch of 1000 (close() relies on it at shutdown)', async () => {
      const log = new TokenEventLog(ctx.t.db, silentLog, { intervalMs: 3_600_000 });
      for (let i = 0; i < 2500; i++) log.record(event(i, { jti: `many-${i}` }));
      await log.flush();
      assert.equal(log.pending, 0, 'flush() left events behind');
      assert.equal((await stored('many-')).length, 2500);
      await log.close();
    });

    it('close() flushes everything still buffered', async () => {
      const log = new TokenEventLog(ctx.t.db, silentLog, { intervalMs: 3_600_000 });
      for (let i = 0; i < 1500; i++) log.record(event(i, { jti: `closing-${i}` }));
      await log.close();
      assert.equal((await stored('closing-')).length, 1500, 'events lost at shutdown');
    });

    it('the background timer writes buffered events without an explicit flush()', async () => {
      const log = new TokenEventLog(ctx.t.db, silentLog, { intervalMs: 20 });
      try {
        log.record(event(0, { jti: 'timer-0' }));
        await eventually('the timer flushed', async () => (await stored('timer-')).length === 1);
        assert.equal(log.pending, 0);
      } finally {
        await log.close();
      }
    });

    it('when the buffer is full, refusals are dropped before issued tokens', async () => {
      const log = new TokenEventLog(ctx.t.db, silentLog, { intervalMs: 3_600_000, maxBuffer: 3 });
      try {
        for (let i = 0; i < 3; i++) log.record(event(i, { jti: `full-r${i}`, outcome: 'refused', error: 'invalid_client' }));
        log.record(event(9, { jti: 'full-issued' }));
        assert.equal(log.pending, 3, 'the buffer stays bounded');
        await log.flush();
        const jtis = (await stored('full-')).map((r) => r.jti);
        assert.ok(jtis.includes('full-issued'), `the issued token's event was dropped in favour of refusals: kept ${jtis.join(', ')}`);
      } finally {
        await log.close();
      }
    });
  });

  describe(`${name}: TokenEventLog keeps events while the database cannot take them`, () => {
    const ctx = freshDb(makeDb, { migrated: false });

    it('flush() against a database without the table keeps every event; a later flush writes them', async () => {
      const log = new TokenEventLog(ctx.t.db, silentLog, { intervalMs: 3_600_000 });
      try {
        for (let i = 0; i < 7; i++) log.record(event(i, { jti: `kept-${i}` }));
        await log.flush();
        assert.equal(log.pending, 7, 'the failed batch is kept');
        log.record(event(7, { jti: 'kept-7' }));
        await log.flush();
        assert.equal(log.pending, 8);
        await migrate(ctx.t.db);
        await log.flush();
        assert.equal(log.pending, 0);
        const rows = await ctx.t.sql<{ jti: string }>('SELECT jti FROM token_events ORDER BY id');
        assert.deepEqual(rows.map((r) => r.jti), Array.from({ length: 8 }, (_, i) => `kept-${i}`), 'every event, once, in order');
      } finally {
        await log.close();
      }
    });
  });

  describe(`${name}: signing keys and shared secrets`, () => {
    const ctx = freshDb(makeDb);

    it('loadSigningKeys() creates exactly one key on first call, stored encrypted, and returns it on later calls', async () => {
      const first = await loadSigningKeys(ctx.t.db, 'ES256', KEK);
      assert.equal(first.length, 1);
      const key = first[0]!;
      assert.equal(key.alg, 'ES256');
      assert.ok(key.kid);
      assert.ok(key.activateAt instanceof Date && key.activateAt.getTime() <= Date.now());
      assert.equal(key.privateJwk.kid, key.kid);
      assert.equal(typeof key.privateJwk.d, 'string', 'the decrypted private JWK holds the private key');
      for (const m of PRIVATE_MEMBERS) assert.ok(!(m in key.publicJwk), `publicJwk must not contain "${m}"`);
      assert.equal(key.publicJwk.kid, key.kid);
      assert.equal(key.publicJwk.x, key.privateJwk.x);

      const again = await loadSigningKeys(ctx.t.db, 'ES256', KEK);
      assert.deepEqual(again.map((k) => k.kid), [key.kid]);
      const other = await loadSigningKeys(ctx.t.second(), 'ES256', KEK);
      assert.deepEqual(other.map((k) => k.kid), [key.kid]);
      const rows = await ctx.t.sql<{ n: number }>('SELECT count(*)::int AS n FROM signing_keys');
      assert.equal(rows[0]!.n, 1);
      const stored = await ctx.t.sql<{ public_jwk: Record<string, unknown>; private_jwk: Record<string, unknown> }>('SELECT public_jwk, private_jwk FROM signing_keys');
      for (const m of PRIVATE_MEMBERS) assert.ok(!(m in stored[0]!.public_jwk), `stored public_jwk must not contain "${m}"`);
      // at rest the private key is ciphertext: a dump without the KEK yields nothing usable
      assert.ok(!JSON.stringify(stored[0]!.private_jwk).includes(key.privateJwk.d as string));
      assert.equal(stored[0]!.private_jwk.alg, 'A256GCM');
      await assert.rejects(readKeys(ctx.t.db, Buffer.alloc(32, 7)), KeyDecryptionError);
    });

    it('sharedSecret() returns the same 32 random bytes across calls and handles; names are independent', async () => {
      const s1 = await sharedSecret(ctx.t.db, 'dpop_nonce');
      assert.ok(Buffer.isBuffer(s1));
      assert.equal(s1.length, 32);
      assert.ok(s1.some((b) => b !== 0));
      assert.deepEqual(await sharedSecret(ctx.t.db, 'dpop_nonce'), s1);
      assert.deepEqual(await sharedSecret(ctx.t.second(), 'dpop_nonce'), s1);
      const [c1, c2] = await Promise.all([sharedSecret(ctx.t.db, 'cookie'), sharedSecret(ctx.t.second(), 'cookie')]);
      assert.deepEqual(c1, c2);
      assert.notDeepEqual(c1, s1);
    });
  });

  describe(`${name}: signing keys created by concurrent callers`, () => {
    const ctx = freshDb(makeDb);

    it('concurrent loadSigningKeys() calls on one Db produce exactly one key', async () => {
      const all = await Promise.all(Array.from({ length: 4 }, () => loadSigningKeys(ctx.t.db, 'ES256', KEK)));
      const rows = await ctx.t.sql<{ kid: string }>('SELECT kid FROM signing_keys');
      assert.equal(rows.length, 1, `keys created: ${rows.length}`);
      assert.deepEqual(new Set(all.map((k) => k.map((x) => x.kid).join(','))), new Set([rows[0]!.kid]));
    });
  });

  describe(`${name}: oidc-provider adapters`, () => {
    const ctx = freshDb(makeDb);
    let bus: FastStore;
    let clients: ClientStore;
    let adapter: ReturnType<typeof oidcAdapterFactory>;
    let replay: ReturnType<typeof sqlReplayGuard>;
    before(() => {
      bus = createMemoryStore();
      clients = new ClientStore(ctx.t.db, bus);
      replay = sqlReplayGuard(ctx.t.db);
      adapter = oidcAdapterFactory({ db: ctx.t.db, clients, claims: new ReplayClaims(replay, () => false), metadataOf: (r) => ({ client_id: r.clientId, scope: r.scope.join(' ') }), isClientRevoked: () => false });
    });
    after(async () => {
      replay?.close();
      await bus?.close();
    });

    it('ReplayDetection: find() is the claim: first undefined, then a "seen" payload', async () => {
      const rd = adapter('ReplayDetection');
      assert.equal(await rd.find('jti-replay-1'), undefined);
      const seen = await rd.find('jti-replay-1');
      assert.ok(seen);
      const now = Math.floor(Date.now() / 1000);
      assert.equal(seen.jti, 'jti-replay-1');
      assert.equal(seen.kind, 'ReplayDetection');
      assert.equal(typeof seen.iat, 'number');
      assert.ok(typeof seen.exp === 'number' && seen.exp > now, 'exp in the future');
      await rd.upsert('jti-replay-1', { jti: 'jti-replay-1', kind: 'ReplayDetection' } as AdapterPayload, 120);
      assert.ok(await rd.find('jti-replay-1'), 'still claimed after upsert()');
      assert.equal(await rd.find('jti-replay-2'), undefined, 'ids are independent');
    });

    it('ReplayDetection: of 20 concurrent find() calls exactly one finds nothing', async () => {
      const rd = adapter('ReplayDetection');
      const results = await Promise.all(Array.from({ length: 20 }, () => rd.find('jti-race')));
      assert.equal(results.filter((r) => r === undefined).length, 1);
    });

    it('Client: active clients are found with their metadata; revoked and unknown ones are not', async () => {
      await clients.create(sampleClient('adapter-client', { scope: ['a', 'b'] }));
      const ca = adapter('Client');
      assert.deepEqual(await ca.find('adapter-client'), { client_id: 'adapter-client', scope: 'a b' });
      assert.equal(await ca.find('no-such-client'), undefined);
      await ctx.t.sql("UPDATE clients SET status = 'revoked' WHERE client_id = 'adapter-client'");
      await clients.changed('adapter-client');
      assert.equal(await ca.find('adapter-client'), undefined);
      await assert.rejects(ca.upsert('x', {} as AdapterPayload, 60));
    });

    it('SqlModelAdapter: upsert/find/findByUid/consume/destroy', async () => {
      const grant = adapter('Grant');
      const payload = { jti: 'g1', kind: 'Grant', grantId: 'grant-A', uid: 'uid-1', nested: { a: [1, 2] } } as unknown as AdapterPayload;
      await grant.upsert('g1', payload, 600);
      assert.deepEqual(await grant.find('g1'), payload);
      assert.deepEqual(await grant.findByUid!('uid-1'), payload);
      assert.equal(await grant.find('g2'), undefined);
      assert.equal(await adapter('RefreshToken').find('g1'), undefined, 'models are separate namespaces');

      const updated = { ...payload, nested: { a: [3] } } as AdapterPayload;
      await grant.upsert('g1', updated, 600);
      assert.deepEqual(await grant.find('g1'), updated, 'upsert replaces the payload');

      await grant.consume('g1');
      const consumed = await grant.find('g1');
      assert.ok(consumed);
      assert.equal(typeof consumed.consumed, 'number');
      assert.ok(Math.abs((consumed.consumed as number) - Date.now() / 1000) < 3600, 'consumed is a unix timestamp (seconds)');

      await grant.destroy('g1');
      assert.equal(await grant.find('g1'), undefined);
      assert.equal(await grant.findByUid!('uid-1'), undefined);
    });

    it('SqlModelAdapter: revokeByGrantId removes every row of that grant in that model only', async () => {
      const rt = adapter('RefreshToken');
      const other = adapter('AccessToken');
      const p = (id: string, grantId: string) => ({ jti: id, grantId } as unknown as AdapterPayload);
      await rt.upsert('rt1', p('rt1', 'G1'), 600);
      await rt.upsert('rt2', p('rt2', 'G1'), 600);
      await rt.upsert('rt3', p('rt3', 'G2'), 600);
      await other.upsert('at1', p('at1', 'G1'), 600);
      await rt.revokeByGrantId!('G1');
      assert.equal(await rt.find('rt1'), undefined);
      assert.equal(await rt.find('rt2'), undefined);
      assert.ok(await rt.find('rt3'));
      assert.ok(await other.find('at1'), 'another model with the same grant id is untouched');
    });

    it('SqlModelAdapter: expired rows are not found; expiresIn 0 never expires', async () => {
      const m = adapter('RegistrationAccessToken');
      await m.upsert('exp1', { jti: 'exp1', uid: 'exp-uid' } as unknown as AdapterPayload, 600);
      await m.upsert('forever', { jti: 'forever' } as unknown as AdapterPayload, 0);
      assert.ok(await m.find('exp1'));
      await ctx.t.sql("UPDATE oidc_models SET expires_at = now() - interval '1 second' WHERE model = 'RegistrationAccessToken' AND id = 'exp1'");
      assert.equal(await m.find('exp1'), undefined);
      assert.equal(await m.findByUid!('exp-uid'), undefined);
      const rows = await ctx.t.sql<{ expires_at: Date | null }>("SELECT expires_at FROM oidc_models WHERE model = 'RegistrationAccessToken' AND id = 'forever'");
      assert.equal(rows[0]!.expires_at, null);
      assert.ok(await m.find('forever'));
    });

    it('SqlModelAdapter: a 1-second row expires by itself (polled)', async () => {
      const m = adapter('Session');
      await m.upsert('short', { jti: 'short' } as unknown as AdapterPayload, 1);
      assert.ok(await m.find('short'));
      await eventually('the 1 s row expires', async () => (await m.find('short')) === undefined);
    });
  });
}
