// Sigil's SQL layer through PgBouncer in transaction pooling mode (2 server connections per
// database): the whole storage contract, instances racing on a fresh database, and failing closed
// when Postgres is down behind a PgBouncer that still accepts connections.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { loadSigningKeys } from '../../src/keys/signing-keys.js';
import { createPgDb, type Db } from '../../src/storage/db.js';
import { StorageUnavailable } from '../../src/storage/errors.js';
import { migrate, MIGRATIONS_DIR } from '../../src/storage/migrate.js';
import { createTestStorage, PG_ADMIN_URL, type TestStorage } from '../support/infra.js';
import { startPgBouncer, type PgBouncer } from '../support/pgbouncer.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { dbContract } from './db-contract.js';
import { type MakeDb, freshDatabases, pgDbVia } from './helpers.js';
import { settlesWithin } from '../support/wait.js';

const KEK = Buffer.alloc(32, 3);
const postgres = () => {
  const u = new URL(PG_ADMIN_URL);
  return { host: u.hostname, port: Number(u.port || 5432) };
};

// one PgBouncer for the contract and the races, started by the first test that needs it
let shared: Promise<PgBouncer> | undefined;
const bouncer = () => (shared ??= startPgBouncer({ upstream: postgres() }));
after(async () => {
  await (await shared)?.close();
});

const makeBouncedDb: MakeDb = pgDbVia(async (url) => (await bouncer()).via(url), 'pgb');

dbContract('pgbouncer (transaction pooling)', makeBouncedDb);

async function migrationFiles(): Promise<string[]> {
  return (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_[\w-]+\.sql$/.test(f)).sort();
}

describe('pgbouncer: instances racing on a fresh database', () => {
  const databases = freshDatabases('pgbrace', async (url) => (await bouncer()).via(url));
  const fresh = () => databases.fresh();
  after(() => databases.close());

  it('three concurrent migrate() calls from three Db objects all succeed; each migration is applied once', async () => {
    const files = await migrationFiles();
    for (let round = 0; round < 3; round++) {
      const { s, open } = await fresh();
      const runs = await settlesWithin(Promise.all([migrate(open()), migrate(open()), migrate(open())]), 30_000, 'concurrent migrations');
      assert.deepEqual(runs.flat().sort(), files, 'every migration applied by exactly one of them');
      const rows = await s.sql<{ version: string }>('SELECT version FROM schema_migrations ORDER BY applied_at, version');
      assert.deepEqual(rows.map((r) => r.version), files, 'applied in order');
      // nothing left behind on the pooled server connections: a later migrate() finds the lock free
      assert.deepEqual(await settlesWithin(migrate(open()), 10_000, 'a later migration run'), []);
    }
  });

  it('concurrent loadSigningKeys() from three Db objects produce one active key', async () => {
    const { s, open } = await fresh();
    await migrate(open());
    const all = await settlesWithin(Promise.all([1, 2, 3].map(() => loadSigningKeys(open(), 'ES256', KEK))), 30_000, 'concurrent key creation');
    assert.equal(new Set(all.map((k) => k[0]!.kid)).size, 1);
    const rows = await s.sql<{ n: number }>('SELECT count(*)::int AS n FROM signing_keys');
    assert.equal(rows[0]!.n, 1);
  });

  it('really shares server connections: more clients than the pool size, at most 2 server connections', async () => {
    const { s, open } = await fresh();
    const db = open();
    await migrate(db);
    const database = new URL(s.databaseUrl).pathname.slice(1);
    await Promise.all(Array.from({ length: 6 }, () => db.transaction(async (tx) => tx.query('SELECT pg_sleep(0.05)'))));
    const pgb = await bouncer();
    const clients = (await pgb.admin<{ database: string }>('SHOW CLIENTS')).filter((c) => c.database === database);
    const servers = (await pgb.admin<{ database: string }>('SHOW SERVERS')).filter((c) => c.database === database);
    assert.ok(clients.length > 2, `clients of ${database}: ${clients.length}`);
    assert.ok(servers.length > 0 && servers.length <= 2, `server connections of ${database}: ${servers.length}`);
  });
});

describe('pgbouncer: Postgres down behind a PgBouncer that still accepts connections', () => {
  let storage: TestStorage;
  let proxy: TcpProxy;
  let pgb: PgBouncer;
  let db: Db;
  before(async () => {
    storage = await createTestStorage('pgbdown');
    proxy = await startTcpProxy(postgres());
    // a long retry: while Postgres is down PgBouncer answers at once with its own error (08P01)
    pgb = await startPgBouncer({ upstream: { host: proxy.host, port: proxy.port }, settings: { server_login_retry: 60 } });
    db = createPgDb(pgb.via(storage.databaseUrl));
  });
  after(async () => {
    await db?.close().catch(() => {});
    await pgb?.close();
    await proxy?.close();
    await storage?.cleanup();
  });

  it('query(), exec(), transaction(), the migration lock and ping() reject with StorageUnavailable (503), never hang', async () => {
    await db.query('SELECT 1');
    proxy.cut('refuse');
    const causes: unknown[] = [];
    const isUnavailable = (err: unknown) => {
      assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${String(err)} (code ${(err as { code?: string }).code})`);
      assert.equal(err.status, 503);
      assert.equal(err.error, 'temporarily_unavailable');
      causes.push(err.cause);
      return true;
    };
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['query', () => db.query('SELECT 1')],
      ['query', () => db.query('SELECT $1::int AS v', [1])],
      ['exec', () => db.exec('SELECT 1; SELECT 2')],
      ['transaction', () => db.transaction(async (tx) => tx.query('SELECT 1'))],
      ['lockedTransaction', () => db.lockedTransaction(1, async (tx) => tx.query('SELECT 1'))],
      ['migrate', () => migrate(db)],
      ['ping', () => db.ping()],
      ['query', () => db.query('SELECT 1')],
    ];
    for (const [what, call] of calls) {
      if (what === 'migrate') {
        // the migration wraps the error with the file name; its cause must still be the 503
        await assert.rejects(settlesWithin(call(), 10_000, what), (err: Error) => (err instanceof StorageUnavailable ? isUnavailable(err) : isUnavailable(err.cause)));
      } else {
        await assert.rejects(settlesWithin(call(), 10_000, what), isUnavailable);
      }
    }
    assert.ok(
      causes.some((c) => (c as { code?: string } | undefined)?.code === '08P01'),
      `PgBouncer's own error (08P01) was among the causes: ${causes.map((c) => (c as Error)?.message).join(' | ')}`,
    );
  });
});
