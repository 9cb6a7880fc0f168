// The SQL storage contract against real Postgres (db-contract-pglite.test.ts runs it unchanged against
// embedded PGlite; two files so the runner takes them side by side, each well within its timeout).
import { dbContract } from './db-contract.js';
import { makePgDb } from './helpers.js';

dbContract('postgres', makePgDb);
