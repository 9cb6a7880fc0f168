// Real Postgres and Redis for tests: each call gets its own database and its own Redis key prefix,
// and removes them afterwards. Nothing is mocked.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';

export const PG_ADMIN_URL = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';

export interface TestStorage {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  /** run SQL against the test database directly (assertions on what was stored) */
  sql<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  redis: Redis;
  cleanup(): Promise<void>;
}

export async function createTestStorage(label = 't'): Promise<TestStorage> {
  const name = `sigil_test_${label}_${process.pid}_${randomBytes(4).toString('hex')}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  // dropping the database at cleanup terminates any connection still open: not a test failure
  pool.on('error', () => {});
  const redisPrefix = `${name}:`;
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  return {
    databaseUrl,
    redisUrl: REDIS_URL,
    redisPrefix,
    redis,
    async sql(text, params) {
      return (await pool.query(text, params as unknown[])).rows;
    },
    async cleanup() {
      await pool.end();
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${redisPrefix}*`, 'COUNT', 1000);
        if (keys.length) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
      redis.disconnect();
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** The environment that puts a Sigil process on this storage. */
export function storageEnv(storage: Pick<TestStorage, 'databaseUrl' | 'redisUrl' | 'redisPrefix'>): Record<string, string> {
  return { DATABASE_URL: storage.databaseUrl, REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix };
}
