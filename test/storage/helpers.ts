// Shared pieces of the storage contract tests: real backends (a fresh Postgres database, a fresh
// PGlite data directory, a fresh Redis key prefix) and a silent logger.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createLogger, type Logger } from '../../src/log.js';
import type { NewClient } from '../../src/clients/client-store.js';
import { createPgDb, createPgliteDb, type Db } from '../../src/storage/db.js';
import { createTestStorage, PG_ADMIN_URL, REDIS_URL, type TestStorage } from '../support/infra.js';

export const silentLog: Logger = createLogger('silent');

/** A fresh, empty database of one backend. */
export interface TestDb {
  db: Db;
  /**
   * Another handle on the same database: a second pool (a second "instance") for Postgres; for
   * PGlite, which one process owns, the same object.
   */
  second(): Db;
  /** raw SQL on the same database, for setting up and asserting stored state */
  sql<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  cleanup(): Promise<void>;
}

export type MakeDb = () => Promise<TestDb>;

/** A fresh Postgres database, reached through `via` (e.g. a PgBouncer in front of it; default directly). */
export function pgDbVia(via: (databaseUrl: string) => string | Promise<string> = (u) => u, label = 'st'): MakeDb {
  return async () => {
    const storage = await createTestStorage(label);
    const url = await via(storage.databaseUrl);
    const db = createPgDb(url);
    const extra: Db[] = [];
    return {
      db,
      second() {
        const d = createPgDb(url);
        extra.push(d);
        return d;
      },
      sql: (text, params) => storage.sql(text, params),
      async cleanup() {
        for (const d of [db, ...extra]) await d.close().catch(() => {});
        await storage.cleanup();
      },
    };
  };
}

export const makePgDb: MakeDb = pgDbVia();

export const makePgliteDb: MakeDb = async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sigil-pglite-'));
  const db = await createPgliteDb(dir);
  return {
    db,
    second: () => db,
    sql: async (text, params) => (await db.query(text, params)).rows as never[],
    async cleanup() {
      await db.close().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
};

/** A database that does not exist yet: its URL, and create()/drop() to make it appear and go. */
export function lateDatabase() {
  const name = `sigil_test_late_${process.pid}_${randomBytes(4).toString('hex')}`;
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: PG_ADMIN_URL });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  return {
    url: url.toString(),
    create: () => admin(`CREATE DATABASE ${name}`),
    drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/** A Redis key prefix of our own, and removal of every key under it. */
export function testRedisPrefix(label = 'st') {
  const prefix = `sigil_test_${label}_${process.pid}_${randomBytes(4).toString('hex')}:`;
  return {
    url: REDIS_URL,
    prefix,
    async cleanup() {
      const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      try {
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
          if (keys.length) await redis.del(...keys);
          cursor = next;
        } while (cursor !== '0');
      } finally {
        redis.disconnect();
      }
    },
  };
}

export const EC_PUBLIC_JWK = {
  kty: 'EC',
  crv: 'P-256',
  x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
  y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
};

export function sampleClient(clientId: string, over: Partial<NewClient> = {}): NewClient {
  return {
    clientId,
    name: `client ${clientId}`,
    scope: ['orders:read', 'orders:write'],
    audiences: ['https://api.example.com/orders', 'https://api.example.com/billing'],
    serves: [],
    grantTypes: ['client_credentials'],
    dpopRequired: true,
    canIntrospect: false,
    isAdmin: false,
    jwks: { keys: [{ ...EC_PUBLIC_JWK, kid: 'k1' }] },
    tokenBinding: 'dpop',
    ...over,
  };
}

/**
 * Fresh, empty Postgres databases for races on a new database: `fresh()` makes one and `open()`
 * another handle on it (a new "instance"), reached through `via` (default directly); `close()`
 * closes every handle and drops every database.
 */
export function freshDatabases(label: string, via: (databaseUrl: string) => string | Promise<string> = (u) => u) {
  const storages: TestStorage[] = [];
  const dbs: Db[] = [];
  return {
    async fresh() {
      const s = await createTestStorage(label);
      storages.push(s);
      const url = await via(s.databaseUrl);
      const open = () => {
        const d = createPgDb(url);
        dbs.push(d);
        return d;
      };
      return { s, open };
    },
    async close() {
      for (const d of dbs) await d.close().catch(() => {});
      for (const s of storages) await s.cleanup();
    },
  };
}
