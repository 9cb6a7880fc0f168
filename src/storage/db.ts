// One SQL interface over a real Postgres (pg.Pool) or embedded Postgres (PGlite), so every query,
// migration and contract test runs unchanged on both.
import pg from 'pg';
import { StorageUnavailable } from './errors.js';

export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface Queryable {
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<T>>;
  /** run a script of several statements without parameters (migrations) */
  exec(sql: string): Promise<void>;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * run fn in one transaction that first takes the advisory lock `key` (pg_advisory_xact_lock):
   * serialises e.g. migrations across instances, and the lock ends with the transaction, so it
   * holds behind a transaction-pooling PgBouncer (a session lock there stays on a pooled backend)
   */
  lockedTransaction<T>(key: number, fn: (tx: Queryable) => Promise<T>): Promise<T>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

// pg returns bigint/int8 as strings; counts and ids in Sigil fit in a double.
pg.types.setTypeParser(20, (v) => Number(v));

/** the transaction-scoped lock first, then fn, in the caller's transaction */
async function lockThen<T>(tx: Queryable, key: number, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [key]);
  return fn(tx);
}

function unavailable(cause: unknown): never {
  throw new StorageUnavailable('postgres', cause);
}

/** True for errors that mean "the database cannot be reached", as opposed to a bad query. */
function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (!e || typeof e !== 'object') return false;
  // SQLSTATE class 08 (connection exception) includes 08P01, which PgBouncer sends for every pooler
  // error (server down, server_login_retry, query_wait_timeout, max_client_conn); 53300: no slot left
  if (typeof e.code === 'string' && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|57P0[1-3]|08[0-9A-Z]{3}|53300)$/.test(e.code)) return true;
  // pg's query_timeout ("Query read timeout"): the server stopped answering mid-query
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout|Connection ended unexpectedly/i.test(e.message ?? '');
}

export function createPgDb(connectionString: string, max = 10): Db {
  const pool = new pg.Pool({
    connectionString,
    max,
    connectionTimeoutMillis: 2000,
    idleTimeoutMillis: 30_000,
    // keep a dead server from holding a request forever
    query_timeout: 5000,
  });
  // an idle client losing its connection must not crash the process; the next query reports it
  pool.on('error', () => {});

  async function run<T>(q: Queryable | pg.Pool | pg.PoolClient, text: string, params?: unknown[]): Promise<QueryResult<T>> {
    try {
      const r = await (q as pg.Pool).query(text, params as unknown[]);
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    } catch (err) {
      if (isConnectionError(err)) unavailable(err);
      throw err;
    }
  }

  async function withClient<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      unavailable(err);
    }
    let broken = false;
    // a checked-out client that loses its connection emits 'error' on itself: without a listener
    // that would crash the process (the query in flight fails on its own)
    const onError = () => {
      broken = true;
    };
    client.on('error', onError);
    try {
      return await fn(client);
    } catch (err) {
      broken = isConnectionError(err);
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  const onClient = (c: pg.PoolClient): Queryable => ({
    query: (t, p) => run(c, t, p),
    exec: async (sql) => {
      await run(c, sql);
    },
  });

  const transaction = <T>(fn: (tx: Queryable) => Promise<T>): Promise<T> =>
    withClient(async (c) => {
      await run(c, 'BEGIN');
      try {
        const result = await fn(onClient(c));
        await run(c, 'COMMIT');
        return result;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        throw err;
      }
    });

  return {
    kind: 'postgres',
    query: (text, params) => run(pool, text, params),
    exec: async (sql) => {
      await run(pool, sql);
    },
    transaction,
    lockedTransaction: (key, fn) => transaction((tx) => lockThen(tx, key, fn)),
    ping: async () => {
      await run(pool, 'SELECT 1');
    },
    close: () => pool.end(),
  };
}

export async function createPgliteDb(dataDir: string): Promise<Db> {
  const { PGlite } = await import('@electric-sql/pglite');
  const lite = await PGlite.create(dataDir);
  type Lite = { query: PGliteQuery; exec: (sql: string) => Promise<unknown> };
  const on = (q: Lite): Queryable => ({
    query: (t, p) => query(q, t, p),
    exec: async (sql) => {
      await q.exec(sql);
    },
  });
  const query = async <T>(q: Lite, text: string, params?: unknown[]): Promise<QueryResult<T>> => {
    const r = await q.query(text, params);
    // PGlite reports affectedRows 0 for a SELECT
    return { rows: r.rows as T[], rowCount: r.affectedRows || r.rows.length };
  };
  return {
    kind: 'pglite',
    ...on(lite as unknown as Lite),
    // PGlite is one connection in one process: its transaction() already excludes every other query
    transaction: (fn) => lite.transaction((tx) => fn(on(tx as unknown as Lite))),
    // one process owns the data directory and PGlite runs one transaction at a time: the lock is
    // taken for parity with Postgres, the exclusion comes from the transaction itself
    lockedTransaction: (key, fn) => lite.transaction((tx) => lockThen(on(tx as unknown as Lite), key, fn)),
    ping: async () => {
      await lite.query('SELECT 1');
    },
    close: () => lite.close(),
  };
}

type PGliteQuery = (text: string, params?: unknown[]) => Promise<{ rows: unknown[]; affectedRows?: number }>;
