// Storage for one server: Postgres (or embedded PGlite), the fast store (Redis or in-process), the
// replay guard over them, and the readiness that watches them.
import { mkdir } from 'node:fs/promises';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { Readiness, type Probe } from '../server/readiness.js';
import { createPgDb, createPgliteDb, type Db } from '../storage/db.js';
import { createMemoryStore, createRedisStore, type FastStore } from '../storage/fast-store.js';
import { migrate } from '../storage/migrate.js';
import { ReplayGenerations } from '../storage/replay-generations.js';
import { redisReplayGuard, sqlReplayGuard, type ReplayGuard } from '../storage/replay-guard.js';

export interface Storage {
  db: Db;
  fast: FastStore;
  replay: ReplayGuard;
  /** with Redis only: tells when Redis lost the replay records it held */
  generations: ReplayGenerations | undefined;
  close(): Promise<void>;
}

export async function openDatabase(config: Config, log: Logger): Promise<Db> {
  if (config.databaseUrl) return createPgDb(config.databaseUrl);
  await mkdir(config.dataDir, { recursive: true });
  log.info({ dataDir: config.dataDir }, 'no DATABASE_URL: using embedded Postgres (PGlite)');
  return createPgliteDb(config.dataDir);
}

/** Migrations run over DATABASE_DIRECT_URL when it is set, on a connection of their own closed afterwards. */
async function migrateDatabase(config: Config, db: Db): Promise<string[]> {
  if (!config.databaseDirectUrl) return migrate(db);
  const direct = createPgDb(config.databaseDirectUrl, 1);
  try {
    return await migrate(direct);
  } finally {
    await direct.close();
  }
}

export async function openStorage(config: Config, log: Logger): Promise<Storage> {
  const db = await openDatabase(config, log);
  const applied = await migrateDatabase(config, db);
  if (applied.length) log.info({ migrations: applied }, 'migrations applied');

  const redis = config.redisUrl ? createRedisStore(config.redisCluster ?? config.redisUrl, config.redisPrefix, log) : undefined;
  const fast: FastStore = redis ?? createMemoryStore(log);
  if (!redis) {
    log.warn('no REDIS_URL: using an in-process stand-in; run a single instance only (replay records stay in Postgres)');
  }
  // replay records in Redis come with the generation that tells when Redis lost them
  const generations = redis && new ReplayGenerations(redis, db, log);
  const replay = redis && generations ? redisReplayGuard(redis, generations) : sqlReplayGuard(db);
  return {
    db, fast, replay, generations,
    async close() {
      replay.close();
      await fast.close();
      await db.close();
    },
  };
}

/**
 * Waits (a bounded time) for Redis and the replay records, so a fresh instance does not start by
 * refusing everything, then watches every store: the answer of /ready and the fail-closed gate.
 */
export async function watchStorage({ db, fast, generations }: Storage, log: Logger): Promise<Readiness> {
  const probes: Probe[] = [{ name: 'postgres', ping: () => db.ping() }];
  // a closed connection is known at once, as is the replay state it leaves unverified
  if (fast.kind === 'redis') probes.push({ name: 'redis', ping: () => fast.ping(), healthy: () => fast.isReady() });
  // the periodic check is how every instance learns of a loss another one noticed
  if (generations) probes.push({ name: 'replay', ping: () => generations.check(), healthy: () => generations.ready() });
  if (!(await fast.whenReady(5000))) log.error({ store: 'redis' }, 'redis not reachable at start; refusing tokens until it is');
  await generations?.check().catch((err: Error) => log.error({ store: 'redis', reason: err.message }, 'replay records not verified at start; refusing tokens until they are'));
  const readiness = new Readiness(probes, log);
  await readiness.check();
  return readiness;
}
