// The token lineage store on both SQL backends (real Postgres and PGlite): what a revocation finds
// (children of a token, tokens naming a client as holder, subject or actor; expired ones left out), the
// chain state an issuer reads, and — on Postgres, with two pools as two instances — the lock order
// that keeps an issuer and a revocation of the same chain apart.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Queryable } from '../../src/storage/db.js';
import { migrate } from '../../src/storage/migrate.js';
import {
  chainState, insertLineage, liveChildren, liveTokensNaming, lockChainForIssuance, lockClientForRevocation, lockTokensForRevocation, pruneLineage, type LineageNode,
} from '../../src/tokens/token-lineage.js';
import { makePgDb, makePgliteDb, type MakeDb, type TestDb } from './helpers.js';
import { eventually } from '../support/wait.js';

const now = () => Math.floor(Date.now() / 1000);

function node(jti: string, over: Partial<LineageNode> = {}): LineageNode {
  return { jti, clientId: 'holder', subject: 'root', actors: ['holder'], parentJti: null, familyId: null, expiresAt: now() + 300, statusList: 'w-0', statusIdx: 1, ...over };
}

async function addClient(q: Queryable, id: string, status: 'active' | 'revoked' = 'active'): Promise<void> {
  await q.query(`INSERT INTO clients (client_id, name, grant_types, jwks, status) VALUES ($1, $1, '{client_credentials}', '{"keys":[]}', $2)`, [id, status]);
}

let version = 1000;
async function addEvent(q: Queryable, kind: 'token_revoked' | 'family_revoked', target: string): Promise<void> {
  await q.query('INSERT INTO security_events (version, kind, target, actor) VALUES ($1, $2, $3, $4)', [++version, kind, target, 'test']);
}

function lineageContract(name: string, makeDb: MakeDb): void {
  describe(`${name}: token lineage`, () => {
    let t: TestDb;
    before(async () => {
      t = await makeDb();
      await migrate(t.db);
    });
    after(async () => {
      await t?.cleanup();
    });

    it('children of any of several parents, not grandchildren, not expired ones', async () => {
      await insertLineage(t.db, node('p1'));
      await insertLineage(t.db, node('c1', { parentJti: 'p1', familyId: 'f1' }));
      await insertLineage(t.db, node('c2', { parentJti: 'p1', statusList: null, statusIdx: null }));
      await insertLineage(t.db, node('c3', { parentJti: 'p2' }));
      await insertLineage(t.db, node('g1', { parentJti: 'c1' }));
      await insertLineage(t.db, node('old', { parentJti: 'p1', expiresAt: now() - 3600 }));
      const children = await liveChildren(t.db, ['p1', 'p2']);
      assert.deepEqual(children.map((c) => c.jti).sort(), ['c1', 'c2', 'c3']);
      const c1 = children.find((c) => c.jti === 'c1')!;
      assert.deepEqual({ ...c1, expiresAt: typeof c1.expiresAt }, { ...node('c1', { parentJti: 'p1', familyId: 'f1' }), expiresAt: 'number' });
      assert.deepEqual(await liveChildren(t.db, []), []);
    });

    it('tokens naming a client as holder, subject or any actor', async () => {
      await insertLineage(t.db, node('n-holder', { clientId: 'x', subject: 'other', actors: ['x'] }));
      await insertLineage(t.db, node('n-subject', { clientId: 'h', subject: 'x', actors: ['h'] }));
      await insertLineage(t.db, node('n-actor', { clientId: 'h', subject: 'other', actors: ['h', 'y', 'x', 'z'] }));
      await insertLineage(t.db, node('n-none', { clientId: 'h', subject: 'other', actors: ['h', 'xx'] }));
      await insertLineage(t.db, node('n-expired', { clientId: 'x', subject: 'x', actors: ['x'], expiresAt: now() - 3600 }));
      assert.deepEqual((await liveTokensNaming(t.db, 'x')).map((n) => n.jti).sort(), ['n-actor', 'n-holder', 'n-subject']);
      assert.equal(await pruneLineage(t.db) >= 2, true, 'expired rows are pruned');
      assert.deepEqual((await t.sql("SELECT jti FROM token_lineage WHERE jti IN ('n-expired', 'old')")), []);
    });

    it('chain state: clients not active (revoked or unknown), revoked tokens, a revoked family', async () => {
      await addClient(t.db, 'live-1');
      await addClient(t.db, 'live-2');
      await addClient(t.db, 'dead-1', 'revoked');
      await addEvent(t.db, 'token_revoked', 'tok-dead');
      await addEvent(t.db, 'family_revoked', 'fam-dead');
      await t.db.transaction(async (tx) => {
        await lockChainForIssuance(tx, ['live-2', 'live-1', 'live-1'], 'tok-live');
        assert.deepEqual(await chainState(tx, { clients: ['live-1', 'live-2'], tokens: ['tok-live'], familyId: 'fam-live' }), { deadClients: [], revokedTokens: [], familyRevoked: false });
        assert.deepEqual(await chainState(tx, { clients: ['live-1', 'dead-1', 'ghost'], tokens: ['tok-live', 'tok-dead'], familyId: 'fam-dead' }), {
          deadClients: ['dead-1', 'ghost'], revokedTokens: ['tok-dead'], familyRevoked: true,
        });
        assert.deepEqual(await chainState(tx, { clients: [], tokens: [], familyId: null }), { deadClients: [], revokedTokens: [], familyRevoked: false });
      });
      // the revocation side's locks take and release within their transaction
      await t.db.transaction(async (tx) => {
        await lockClientForRevocation(tx, 'live-1');
        await lockTokensForRevocation(tx, ['tok-live', 'tok-dead']);
        await lockTokensForRevocation(tx, []);
      });
    });
  });
}

lineageContract('postgres', makePgDb);
lineageContract('pglite', makePgliteDb);

describe('postgres: an issuer and a revocation of the same chain exclude each other (two pools)', () => {
  let t: TestDb;
  before(async () => {
    t = await makePgDb();
    await migrate(t.db);
    await addClient(t.db, 'front');
  });
  after(async () => {
    await t?.cleanup();
  });

  const waitingAdvisoryLocks = async () => (await t.sql<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks
     WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`))[0]!.n;

  it('a revocation waits for an issuer holding the parent, then finds the child it committed', async () => {
    const other = t.second();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const issuerLocked = new Promise<void>((r) => (locked = r));
    const issuer = t.db.transaction(async (tx) => {
      await lockChainForIssuance(tx, ['front'], 'parent-1');
      locked();
      await held;
      await insertLineage(tx, node('child-1', { parentJti: 'parent-1' }));
    });
    await issuerLocked;
    const revoker = other.transaction(async (tx) => {
      await lockTokensForRevocation(tx, ['parent-1']);
      return liveChildren(tx, ['parent-1']);
    });
    try {
      await eventually('the revocation to wait for the issuer\'s lock', async () => (await waitingAdvisoryLocks()) > 0);
    } finally {
      // also on failure: a transaction left holding its locks would block every later test
      release();
    }
    await issuer;
    assert.deepEqual((await revoker).map((c) => c.jti), ['child-1'], 'the revocation finds the child committed while it waited');
  });

  it('an issuer waits for a revocation holding the parent, then sees the revocation', async () => {
    const other = t.second();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const revokerLocked = new Promise<void>((r) => (locked = r));
    const revoker = other.transaction(async (tx) => {
      await addEvent(tx, 'token_revoked', 'parent-2');
      await lockTokensForRevocation(tx, ['parent-2']);
      locked();
      await held;
    });
    await revokerLocked;
    const issuer = t.db.transaction(async (tx) => {
      await lockChainForIssuance(tx, ['front'], 'parent-2');
      return chainState(tx, { clients: ['front'], tokens: ['parent-2'], familyId: null });
    });
    try {
      await eventually('the issuer to wait for the revocation\'s lock', async () => (await waitingAdvisoryLocks()) > 0);
    } finally {
      // also on failure: a transaction left holding its locks would block every later test
      release();
    }
    await revoker;
    assert.deepEqual((await issuer).revokedTokens, ['parent-2'], 'the issuer reads the revocation committed while it waited');
  });

  it('an issuer waits for a client revocation in progress, then sees the client revoked', async () => {
    const other = t.second();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const revokerLocked = new Promise<void>((r) => (locked = r));
    const revoker = other.transaction(async (tx) => {
      await lockClientForRevocation(tx, 'front');
      await tx.query("UPDATE clients SET status = 'revoked' WHERE client_id = 'front'");
      locked();
      await held;
    });
    await revokerLocked;
    const issuer = t.db.transaction(async (tx) => {
      await lockChainForIssuance(tx, ['front'], null);
      return chainState(tx, { clients: ['front'], tokens: [], familyId: null });
    });
    try {
      await eventually('the issuer to wait for the client revocation', async () => (await waitingAdvisoryLocks()) > 0);
    } finally {
      // also on failure: a transaction left holding its locks would block every later test
      release();
    }
    await revoker;
    assert.deepEqual((await issuer).deadClients, ['front']);
  });
});
