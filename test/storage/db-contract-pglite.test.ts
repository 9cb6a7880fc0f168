// The SQL storage contract against embedded PGlite (db-contract-postgres.test.ts: against real Postgres).
import { dbContract } from './db-contract.js';
import { makePgliteDb } from './helpers.js';

dbContract('pglite', makePgliteDb);
