// Applies migrations/NNN_name.sql in order, each in its own transaction, recorded in
// schema_migrations. Each transaction first takes a transaction-scoped advisory lock, so instances
// that start together apply every file once, also through a transaction-pooling PgBouncer.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.js';

const MIGRATION_LOCK = 0x5161_1001;
export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../migrations');

export async function migrate(db: Db, dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^\d+_[\w-]+\.sql$/.test(f)).sort();
  await db.lockedTransaction(MIGRATION_LOCK, (tx) =>
    tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`),
  );
  const done = new Set((await db.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
  const applied: string[] = [];
  for (const file of files) {
    if (done.has(file)) continue;
    const sql = await readFile(path.join(dir, file), 'utf8');
    const mine = await db
      .lockedTransaction(MIGRATION_LOCK, async (tx) => {
        // another instance may have applied it while this one waited for the lock
        if ((await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [file])).rowCount > 0) return false;
        await tx.exec(sql);
        await tx.query('INSERT INTO schema_migrations (version) VALUES ($1)', [file]);
        return true;
      })
      .catch((err: Error) => {
        throw new Error(`migration ${file} failed: ${err.message}`, { cause: err });
      });
    if (mine) applied.push(file);
  }
  return applied;
}
