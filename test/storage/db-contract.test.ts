// The SQL storage contract, run unchanged against real Postgres and against embedded PGlite.
import { dbContract } from './db-contract.js';
import { makePgDb, makePgliteDb } from './helpers.js';

dbContract('postgres', makePgDb);
dbContract('pglite', makePgliteDb);
