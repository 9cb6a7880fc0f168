// What only a real Postgres server can show: several instances (pools) racing on one database, and
// behaviour when the server is unreachable or the database is not there yet.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { loadSigningKeys } from '../../src/keys/signing-keys.js';

const KEK = Buffer.alloc(32, 3);
import { createPgDb, type Db } from '../../src/storage/db.js';
import { StorageUnavailable } from '../../src/storage/errors.js';
import { migrate, MIGRATIONS_DIR } from '../../src/storage/migrate.js';
import { TokenEventLog, type TokenEvent } from '../../src/tokens/token-events.js';
import { PG_ADMIN_URL } from '../support/infra.js';
import { freshDatabases, lateDatabase, silentLog } from './helpers.js';
import { settlesWithin } from '../support/wait.js';

const UNREACHABLE = 'postgres://postgres@127.0.0.1:1/sigil';

async function migrationFiles(): Promise<string[]> {
  return (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_[\w-]+\.sql$/.test(f)).sort();
}

const ev = (i: number): TokenEvent => ({ at: new Date(), outcome: 'issued', grantType: 'client_credentials', clientId: 'c', jti: `pg-${i}`, expiresAt: new Date(Date.now() + 300_000) });

describe('postgres: instances racing on a fresh database', () => {
  const databases = freshDatabases('race');
  const fresh = () => databases.fresh();
  after(() => databases.close());

  it('two concurrent migrate() calls from two Db objects both succeed; each migration is applied once', async () => {
    const files = await migrationFiles();
    for (let round = 0; round < 3; round++) {
      const { s, open } = await fresh();
      const [a, b] = await Promise.all([migrate(open()), migrate(open())]);
      assert.deepEqual([...a, ...b].sort(), files, 'every migration applied by exactly one of them');
      // each file is its own transaction under the lock: whichever instance applied it, in order
      const rows = await s.sql<{ version: string }>('SELECT version FROM schema_migrations ORDER BY applied_at, version');
      assert.deepEqual(rows.map((r) => r.version), files);
    }
  });

  it('two concurrent loadSigningKeys() from two Db objects produce one active key', async () => {
    const { s, open } = await fresh();
    await migrate(open());
    const [a, b, c] = await Promise.all([loadSigningKeys(open(), 'ES256', KEK), loadSigningKeys(open(), 'ES256', KEK), loadSigningKeys(open(), 'ES256', KEK)]);
    assert.equal(a.length, 1);
    assert.equal(b[0]!.kid, a[0]!.kid);
    assert.equal(c[0]!.kid, a[0]!.kid);
    const rows = await s.sql<{ n: number }>('SELECT count(*)::int AS n FROM signing_keys');
    assert.equal(rows[0]!.n, 1);
  });

  it('concurrent loadSigningKeys() on one Db (one pool) produce one active key', async () => {
    const { s, open } = await fresh();
    const db = open();
    await migrate(db);
    const all = await Promise.all(Array.from({ length: 5 }, () => loadSigningKeys(db, 'EdDSA', KEK)));
    assert.equal(new Set(all.map((k) => k[0]!.kid)).size, 1);
    assert.equal(all[0]![0]!.alg, 'EdDSA');
    const rows = await s.sql<{ n: number }>('SELECT count(*)::int AS n FROM signing_keys');
    assert.equal(rows[0]!.n, 1);
  });
});

describe('postgres: unreachable server', () => {
  let db: Db;
  before(() => {
    db = createPgDb(UNREACHABLE);
  });
  after(async () => {
    await db.close();
  });

  const isUnavailable = (err: unknown) => {
    assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${String(err)}`);
    assert.equal(err.status, 503);
    assert.equal(err.error, 'temporarily_unavailable');
    assert.equal(err.store, 'postgres');
    return true;
  };

  it('query(), exec(), transaction(), lockedTransaction() and ping() reject with StorageUnavailable', async () => {
    await assert.rejects(settlesWithin(db.query('SELECT 1')), isUnavailable);
    await assert.rejects(settlesWithin(db.exec('SELECT 1')), isUnavailable);
    await assert.rejects(settlesWithin(db.transaction(async (tx) => tx.query('SELECT 1'))), isUnavailable);
    await assert.rejects(settlesWithin(db.lockedTransaction(1, async () => 1)), isUnavailable);
    await assert.rejects(settlesWithin(db.ping()), isUnavailable);
  });

  it('a server with no connection slot left (53300 too many connections) is StorageUnavailable, not a bad query', async () => {
    // a role of our own limited to 0 connections: Postgres answers 53300, as when max_connections is reached
    const role = `sigil_test_full_${process.pid}_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
    await admin.connect();
    await admin.query(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT 0`);
    const url = new URL(PG_ADMIN_URL);
    url.username = role;
    const full = createPgDb(url.toString());
    try {
      await assert.rejects(settlesWithin(full.query('SELECT 1')), (err) => {
        assert.equal((err as StorageUnavailable).cause && ((err as StorageUnavailable).cause as { code?: string }).code, '53300');
        return isUnavailable(err);
      });
      await assert.rejects(settlesWithin(full.transaction(async (tx) => tx.query('SELECT 1'))), isUnavailable);
    } finally {
      await full.close().catch(() => {});
      await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
      await admin.end();
    }
  });

  it('TokenEventLog.flush() keeps every event and does not throw', async () => {
    const log = new TokenEventLog(db, silentLog, { intervalMs: 3_600_000 });
    for (let i = 0; i < 4; i++) log.record(ev(i));
    await settlesWithin(log.flush());
    assert.equal(log.pending, 4);
    await settlesWithin(log.flush());
    assert.equal(log.pending, 4);
  });
});

describe('postgres: TokenEventLog survives a database that appears later', () => {
  const late = lateDatabase();
  let db: Db;
  before(() => {
    db = createPgDb(late.url);
  });
  after(async () => {
    await db.close().catch(() => {});
    await late.drop();
  });

  it('events recorded while the database is missing are written once it exists', async () => {
    const log = new TokenEventLog(db, silentLog, { intervalMs: 3_600_000 });
    try {
      for (let i = 0; i < 5; i++) log.record(ev(i));
      await settlesWithin(log.flush());
      assert.equal(log.pending, 5, 'nothing lost while the database is missing');
      await late.create();
      await migrate(db);
      log.record(ev(5));
      await settlesWithin(log.flush());
      assert.equal(log.pending, 0);
      const rows = await db.query<{ jti: string }>('SELECT jti FROM token_events ORDER BY id');
      assert.deepEqual(rows.rows.map((r) => r.jti), ['pg-0', 'pg-1', 'pg-2', 'pg-3', 'pg-4', 'pg-5']);
    } finally {
      await log.close();
    }
  });
});
