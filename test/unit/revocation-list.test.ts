// The revocation list's catch-up (revocation/revocation-list.ts, security-events.ts) on real Postgres.
// One list writes (its transactions append to security_events); the other reads, fed by a bus the
// test controls message by message, so that messages can be lost, repeated or reordered on purpose.
// What must hold: in-order messages cost no query; a gap in versions starts a catch-up from Postgres
// at once; what arrived is honoured while behind; duplicates and late messages never move the version
// back; a failed catch-up is retried (next message, reconnect, periodic check); skipped version
// numbers and expired events do not leave the view stuck behind. Last, the same over real Redis.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/log.js';
import { RevocationList } from '../../src/revocation/revocation-list.js';
import type { NewSecurityEvent, SecurityEvent } from '../../src/revocation/security-events.js';
import { createPgDb, type Db, type Queryable, type QueryResult } from '../../src/storage/db.js';
import { StorageUnavailable } from '../../src/storage/errors.js';
import { createRedisStore, type BusHandler, type FastStore } from '../../src/storage/fast-store.js';
import { migrate } from '../../src/storage/migrate.js';
import { createTestStorage, type TestStorage } from '../support/infra.js';
import { eventually } from '../support/wait.js';

const NEVER = 3_600_000;
const silent = createLogger('silent');

/** A bus whose deliveries the test makes: publish() only records; deliver() hands a message to the subscribers. */
class HandFedBus implements FastStore {
  readonly kind = 'memory' as const;
  readonly published: string[] = [];
  failPublish = false;
  readonly #handlers: BusHandler[] = [];
  readonly #reconnect: Array<() => void> = [];
  async publish(_channel: string, message: string): Promise<void> {
    if (this.failPublish) throw new Error('bus down');
    this.published.push(message);
  }
  subscribe(_channel: string, handler: BusHandler): void {
    this.#handlers.push(handler);
  }
  onReconnect(handler: () => void): void {
    this.#reconnect.push(handler);
  }
  deliver(message: string): void {
    for (const h of this.#handlers) h(message);
  }
  reconnect(): void {
    for (const h of this.#reconnect) h();
  }
  isReady = () => true;
  whenReady = async () => true;
  async ping(): Promise<void> {}
  async close(): Promise<void> {}
}

/**
 * A Db that counts the reader's queries, can be taken down, and says when it is idle: how a test
 * sees that a catch-up started (a query in the same tick as the message) and that it finished.
 */
class WatchedDb implements Db {
  readonly kind: Db['kind'];
  queries = 0;
  down = false;
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #onQuery: Array<() => void> = [];
  constructor(private readonly inner: Db) {
    this.kind = inner.kind;
  }
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<T>> {
    this.queries++;
    const settled = () => {
      this.#inflight.delete(tracked);
      for (const f of this.#onQuery.splice(0)) f();
    };
    const run = this.down ? Promise.reject(new StorageUnavailable('postgres', new Error('connection refused'))) : this.inner.query<T>(text, params);
    const result = run.then((v) => (settled(), v), (e: unknown) => { settled(); throw e; });
    const tracked = result.catch(() => {});
    this.#inflight.add(tracked);
    return result;
  }
  /** resolves once no query is in flight, nor started by what the last one's answer woke up */
  async idle(): Promise<void> {
    for (;;) {
      while (this.#inflight.size) await Promise.all([...this.#inflight]);
      await new Promise((r) => setImmediate(r));
      if (!this.#inflight.size) return;
    }
  }
  /** resolves when the next query settles (fails after `ms`: a guard against hanging, not a timing assertion) */
  nextQuery(ms = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no query within ${ms} ms`)), ms);
      this.#onQuery.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  exec(sql: string) {
    return this.inner.exec(sql);
  }
  transaction<T>(fn: (tx: Queryable) => Promise<T>) {
    return this.inner.transaction(fn);
  }
  lockedTransaction<T>(key: number, fn: (tx: Queryable) => Promise<T>) {
    return this.inner.lockedTransaction(key, fn);
  }
  ping() {
    return this.inner.ping();
  }
  async close(): Promise<void> {}
}

/** a logger that keeps what was logged at warn level (a failed catch-up is reported there) */
function recordingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } as unknown as NodeJS.WritableStream;
  return { log: createLogger('warn', destination), lines };
}

let storage: TestStorage;
let writerDb: Db;
let readerPool: Db;
let writerBus: HandFedBus;
let writer: RevocationList;
const lists: RevocationList[] = [];

before(async () => {
  storage = await createTestStorage('revlist');
  writerDb = createPgDb(storage.databaseUrl, 2);
  readerPool = createPgDb(storage.databaseUrl, 2);
  await migrate(writerDb);
  writerBus = new HandFedBus();
  writer = new RevocationList(writerDb, writerBus, silent);
  await writer.start(NEVER);
  lists.push(writer);
});

after(async () => {
  for (const l of lists) l.stop();
  await writerDb?.close();
  await readerPool?.close();
  await storage?.cleanup();
});

const id = (label: string) => `${label}-${randomBytes(6).toString('hex')}`;
const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

/** the writer records a revocation: the event, and the message it published (undefined when it was a repeat) */
async function record(e: Partial<NewSecurityEvent> & { kind: NewSecurityEvent['kind'] }): Promise<{ event?: SecurityEvent; message?: string }> {
  const before = writerBus.published.length;
  const event = await writer.transaction((_tx, append) => append({ target: id(e.kind), actor: 'test', ...(e.kind === 'client_revoked' ? {} : { expiresAt: inAnHour() }), ...e }));
  return { event, message: writerBus.published.length > before ? writerBus.published.at(-1) : undefined };
}
const revokeToken = async (over: Partial<NewSecurityEvent> = {}) => {
  const r = await record({ kind: 'token_revoked', ...over });
  assert.ok(r.event && r.message);
  return { event: r.event, message: r.message };
};

/** a fresh reading instance, started now (it loads everything recorded so far) */
async function reader(opts: { checkIntervalMs?: number; log?: ReturnType<typeof createLogger> } = {}) {
  const db = new WatchedDb(readerPool);
  const bus = new HandFedBus();
  const list = new RevocationList(db, bus, opts.log ?? silent);
  const heard: SecurityEvent[] = [];
  list.onEvent((e) => heard.push(e));
  await list.start(opts.checkIntervalMs ?? NEVER);
  lists.push(list);
  await db.idle();
  db.queries = 0;
  heard.length = 0;
  return { list, db, bus, heard };
}

describe('revocation list: start and in-order messages', () => {
  it('start loads every event recorded before, and the version of the counter', async () => {
    const client = await record({ kind: 'client_revoked' });
    const family = await record({ kind: 'family_revoked' });
    const token = await revokeToken();
    const { list } = await reader();
    assert.equal(list.version, token.event.version);
    assert.equal(list.isClientRevoked(client.event!.target), true);
    assert.equal(list.isFamilyRevoked(family.event!.target), true);
    assert.equal(list.isTokenRevoked(token.event.target), true);
    assert.equal(list.isTokenRevoked(id('never-revoked')), false);
  });

  it('applies each next message at once and advances the version, without a single query', async () => {
    const r = await reader();
    const events = [await revokeToken(), await record({ kind: 'client_revoked' }), await record({ kind: 'family_revoked' })];
    for (const { event, message } of events) {
      r.bus.deliver(message!);
      assert.equal(r.list.version, event!.version);
    }
    assert.equal(r.list.isTokenRevoked(events[0]!.event!.target), true);
    assert.equal(r.list.isClientRevoked(events[1]!.event!.target), true);
    assert.equal(r.list.isFamilyRevoked(events[2]!.event!.target), true);
    assert.deepEqual(r.heard.map((e) => e.version), events.map((e) => e.event!.version), 'listeners hear each event');
    await r.db.idle();
    assert.equal(r.db.queries, 0, 'the fast path costs no round trip to Postgres');
  });

  it('ignores messages that are not events', async () => {
    const r = await reader();
    const v = r.list.version;
    for (const junk of ['not json', '{"kind":"token_revoked","target":"x"}', '{"version":"7","kind":"token_revoked","target":"x"}', '"text"', '[]']) {
      assert.doesNotThrow(() => r.bus.deliver(junk));
    }
    assert.equal(r.list.version, v);
    assert.equal(r.list.isTokenRevoked('x'), false);
    assert.equal(r.db.queries, 0);
  });

  // a throw in the bus handler is an uncaught exception in ioredis's 'message' event: the process ends
  it('ignores messages that are JSON but not an event (null, a number, an array, a non-integer version)', async () => {
    const r = await reader();
    for (const message of ['null', '1', '[]', '"x"', '{"version":"1"}', '{"version":1.5}']) {
      assert.doesNotThrow(() => r.bus.deliver(message), message);
    }
    assert.equal(r.db.queries, 0);
  });
});

describe('revocation list: a gap in versions', () => {
  it('honours the event that revealed the gap at once, starts a catch-up in the same tick, and fills the gap from Postgres', async () => {
    const r = await reader();
    const first = await revokeToken();
    const lost = await record({ kind: 'client_revoked' });
    const third = await revokeToken();
    r.bus.deliver(first.message);
    assert.equal(r.db.queries, 0);
    r.bus.deliver(third.message);
    // while behind: what arrived counts, the version stays at the last contiguous event
    assert.equal(r.list.isTokenRevoked(third.event.target), true, 'the newer revocation is honoured before the gap is filled');
    assert.equal(r.list.isClientRevoked(lost.event!.target), false);
    assert.equal(r.list.version, first.event.version, 'the version does not jump over what is missing');
    assert.ok(r.db.queries > 0, 'the catch-up started at once, not on the next periodic check');
    await r.db.idle();
    assert.equal(r.list.isClientRevoked(lost.event!.target), true, 'the lost event was read from Postgres');
    assert.equal(r.list.version, third.event.version);
    assert.ok(r.heard.some((e) => e.version === lost.event!.version), 'listeners hear the recovered event too');
  });

  it('several lost events in a row are all recovered by one catch-up', async () => {
    const r = await reader();
    const lost = [await revokeToken(), await record({ kind: 'family_revoked' }), await record({ kind: 'client_revoked' })];
    const last = await revokeToken();
    r.bus.deliver(last.message);
    await r.db.idle();
    assert.equal(r.list.isTokenRevoked(lost[0]!.event!.target), true);
    assert.equal(r.list.isFamilyRevoked(lost[1]!.event!.target), true);
    assert.equal(r.list.isClientRevoked(lost[2]!.event!.target), true);
    assert.equal(r.list.version, last.event.version);
    assert.equal(r.db.queries, 2, 'one catch-up: the counter, then the events after the version held');
  });

  it('concurrent reasons to catch up share one run', async () => {
    const r = await reader();
    await revokeToken();
    const last = await revokeToken();
    r.bus.deliver(last.message);
    const during = r.db.queries;
    const joined = [r.list.catchUp('a'), r.list.catchUp('b')];
    assert.equal(r.db.queries, during, 'no second run while one is in flight');
    await Promise.all(joined);
    await r.db.idle();
    assert.equal(r.db.queries, 2);
    assert.equal(r.list.version, last.event.version);
  });

  it('version numbers skipped by a repeated revocation do not leave the view behind', async () => {
    const r = await reader();
    const target = id('twice');
    const once = await revokeToken({ target });
    const repeat = await record({ kind: 'token_revoked', target });
    assert.equal(repeat.event, undefined, 'revoking twice is a no-op');
    assert.equal(repeat.message, undefined, 'and nothing is announced');
    const next = await revokeToken();
    assert.equal(next.event.version, once.event.version + 2, 'the repeat used a version number');
    r.bus.deliver(once.message);
    r.bus.deliver(next.message);
    await r.db.idle();
    assert.equal(r.list.version, next.event.version, 'caught up past the hole');
    // and the next message is in order again: no further catch-up
    const after = await revokeToken();
    const queries = r.db.queries;
    r.bus.deliver(after.message);
    assert.equal(r.list.version, after.event.version);
    await r.db.idle();
    assert.equal(r.db.queries, queries, 'no catch-up for an in-order message after the hole');
  });

  it('a lost event that has expired is not resurrected, and the version still moves past it', async () => {
    const r = await reader();
    const expired = await revokeToken({ expiresAt: Math.floor(Date.now() / 1000) - 60 });
    const next = await revokeToken();
    r.bus.deliver(next.message);
    await r.db.idle();
    assert.equal(r.list.isTokenRevoked(expired.event.target), false, 'an expired revocation no longer matters');
    assert.equal(r.list.version, next.event.version);
  });
});

describe('revocation list: the newest version numbers carry no event', () => {
  it('a catch-up reaches the counter even when the newest numbers were burned by a repeat or hold only expired events', async () => {
    const r = await reader();
    const first = await revokeToken();
    r.bus.deliver(first.message);
    await record({ kind: 'token_revoked', target: first.event.target });
    await revokeToken({ expiresAt: Math.floor(Date.now() / 1000) - 60 });
    const counter = await writer.store.currentVersion();
    assert.equal(counter, first.event.version + 2);
    r.bus.reconnect();
    await r.db.idle();
    assert.equal(r.list.version, counter, 'otherwise every later message would look like a gap');
    // so the next event is in order: applied with no catch-up
    const next = await revokeToken();
    const queries = r.db.queries;
    r.bus.deliver(next.message);
    assert.equal(r.list.version, next.event.version);
    await r.db.idle();
    assert.equal(r.db.queries, queries);
  });
});

describe('revocation list: duplicates and reordering', () => {
  it('a duplicate message changes nothing and starts no catch-up', async () => {
    const r = await reader();
    const e = await revokeToken();
    r.bus.deliver(e.message);
    r.bus.deliver(e.message);
    const older = await reader();
    older.bus.deliver(e.message);
    assert.equal(r.list.version, e.event.version);
    assert.equal(r.list.isTokenRevoked(e.event.target), true);
    await r.db.idle();
    await older.db.idle();
    assert.equal(r.db.queries, 0);
    assert.equal(older.db.queries, 0, 'an instance that already has it ignores it');
  });

  it('a late message after the catch-up filled its place does not move the version back', async () => {
    const r = await reader();
    const late = await revokeToken();
    const early = await revokeToken();
    r.bus.deliver(early.message);
    await r.db.idle();
    assert.equal(r.list.version, early.event.version);
    const queries = r.db.queries;
    r.bus.deliver(late.message);
    assert.equal(r.list.version, early.event.version);
    await r.db.idle();
    assert.equal(r.db.queries, queries, 'an old message is no gap');
  });

  it('a late message that arrives while the catch-up runs is applied, and the catch-up still ends at the newest version', async () => {
    const r = await reader();
    const late = await revokeToken();
    const early = await revokeToken();
    r.bus.deliver(early.message);
    r.bus.deliver(late.message);
    assert.equal(r.list.version, late.event.version, 'the late one was the next expected');
    await r.db.idle();
    assert.equal(r.list.version, early.event.version);
    assert.equal(r.db.queries, 2, 'one catch-up');
  });
});

describe('revocation list: when Postgres cannot be read', () => {
  it('a failed catch-up is logged, keeps what arrived, stays behind, and the next gap retries it', async () => {
    const { log, lines } = recordingLogger();
    const r = await reader({ log });
    const lost = await revokeToken();
    const arrived = await revokeToken();
    const v = r.list.version;
    r.db.down = true;
    r.bus.deliver(arrived.message);
    await r.db.idle();
    assert.equal(r.list.isTokenRevoked(arrived.event.target), true, 'what arrived is honoured while behind');
    assert.equal(r.list.isTokenRevoked(lost.event.target), false);
    assert.equal(r.list.version, v, 'still behind');
    assert.ok(lines.some((l) => l.msg === 'revocation catch-up failed' && l.level === 'warn'), JSON.stringify(lines));
    r.db.down = false;
    const next = await revokeToken();
    r.bus.deliver(next.message);
    await r.db.idle();
    assert.equal(r.list.isTokenRevoked(lost.event.target), true);
    assert.equal(r.list.version, next.event.version);
  });

  it('a Redis reconnect catches up what was lost while the bus was away, with no later message to show the gap', async () => {
    const r = await reader();
    const lost = [await revokeToken(), await record({ kind: 'client_revoked' })];
    assert.equal(r.list.isTokenRevoked(lost[0]!.event!.target), false);
    r.bus.reconnect();
    await r.db.idle();
    assert.equal(r.list.isTokenRevoked(lost[0]!.event!.target), true);
    assert.equal(r.list.isClientRevoked(lost[1]!.event!.target), true);
    assert.equal(r.list.version, lost[1]!.event!.version);
  });

  it('the periodic check catches up a silent loss, and forgets revocations once they expire', async () => {
    const r = await reader({ checkIntervalMs: 20 });
    const lost = await revokeToken();
    // the last message lost: nothing reveals the gap but the periodic comparison with the counter
    for (let i = 0; i < 200 && !r.list.isTokenRevoked(lost.event.target); i++) {
      await r.db.nextQuery();
      await r.db.idle();
    }
    assert.equal(r.list.isTokenRevoked(lost.event.target), true);
    assert.equal(r.list.version, lost.event.version);
    // an event that expired in transit is honoured until the next check prunes it
    const expired = { ...lost.event, version: lost.event.version, target: id('expired'), expiresAt: Math.floor(Date.now() / 1000) - 1 };
    r.bus.deliver(JSON.stringify(expired));
    assert.equal(r.list.isTokenRevoked(expired.target), true);
    for (let i = 0; i < 200 && r.list.isTokenRevoked(expired.target); i++) {
      await r.db.nextQuery();
      await r.db.idle();
    }
    assert.equal(r.list.isTokenRevoked(expired.target), false, 'pruned');
    assert.equal(r.list.isTokenRevoked(lost.event.target), true, 'an unexpired one is kept');
    r.list.stop();
  });

  it('periodic checks against a Postgres that is down do not throw, and catch up once it is back', async () => {
    const r = await reader({ checkIntervalMs: 20 });
    r.db.down = true;
    const lost = await revokeToken();
    await r.db.nextQuery();
    await r.db.nextQuery();
    assert.equal(r.list.isTokenRevoked(lost.event.target), false);
    r.db.down = false;
    for (let i = 0; i < 200 && !r.list.isTokenRevoked(lost.event.target); i++) {
      await r.db.nextQuery();
      await r.db.idle();
    }
    assert.equal(r.list.version, lost.event.version);
    r.list.stop();
  });
});

describe('revocation list: the writing instance', () => {
  it('applies its own events at the commit, before any message comes back', async () => {
    const { event } = await revokeToken();
    assert.equal(writer.isTokenRevoked(event.target), true);
  });

  it('applies and announces nothing of a transaction that rolls back', async () => {
    const target = id('rolled-back');
    const published = writerBus.published.length;
    await assert.rejects(writer.transaction(async (_tx, append) => {
      await append({ kind: 'token_revoked', target, actor: 'test', expiresAt: inAnHour() });
      throw new Error('abort');
    }), /abort/);
    assert.equal(writer.isTokenRevoked(target), false);
    assert.equal(writerBus.published.length, published);
    assert.equal(await writer.store.find('token_revoked', target), undefined);
  });

  it('a failed publish does not fail the revocation; other instances catch up from Postgres', async () => {
    const r = await reader();
    writerBus.failPublish = true;
    let event: SecurityEvent | undefined;
    try {
      event = await writer.transaction((_tx, append) => append({ kind: 'token_revoked', target: id('unannounced'), actor: 'test', expiresAt: inAnHour() }));
    } finally {
      writerBus.failPublish = false;
    }
    assert.ok(event);
    assert.equal(writer.isTokenRevoked(event.target), true);
    r.bus.reconnect();
    await r.db.idle();
    assert.equal(r.list.isTokenRevoked(event.target), true);
  });
});

describe('security events in Postgres: pruning', () => {
  it('drops revocations expired over a minute ago and key-change notices over a day old; keeps the rest', async () => {
    const now = Math.floor(Date.now() / 1000);
    const longExpired = await revokeToken({ expiresAt: now - 120 });
    const justExpired = await revokeToken({ expiresAt: now - 10 });
    const live = await record({ kind: 'family_revoked', expiresAt: now + 60 });
    const client = await record({ kind: 'client_revoked' });
    const oldNotice = await record({ kind: 'client_keys_changed' });
    const newNotice = await record({ kind: 'client_keys_changed' });
    await storage.sql(`UPDATE security_events SET at = now() - interval '25 hours' WHERE version = $1`, [oldNotice.event!.version]);
    await writer.store.prune();
    const left = new Set((await storage.sql<{ version: string }>('SELECT version FROM security_events')).map((r) => Number(r.version)));
    assert.equal(left.has(longExpired.event.version), false, 'expired two minutes ago');
    assert.equal(left.has(oldNotice.event!.version), false, 'a key-change notice of yesterday');
    for (const [label, e] of [['expired 10 s ago (a minute of grace)', justExpired.event], ['unexpired', live.event], ['a client revocation (never expires)', client.event], ['a fresh notice', newNotice.event]] as const) {
      assert.equal(left.has(e!.version), true, label);
    }
    // and a catch-up from before them all never returns what no longer matters
    const since = await writer.store.since(longExpired.event.version - 1);
    assert.deepEqual(since.map((e) => e.version), [live.event!.version, client.event!.version, newNotice.event!.version]);
  });
});

describe('revocation list over real Redis', () => {
  let writerRedis: FastStore;
  let readerRedis: FastStore;
  let a: RevocationList;
  let b: RevocationList;
  let bDb: WatchedDb;

  before(async () => {
    const prefix = `${storage.redisPrefix}rl:`;
    writerRedis = createRedisStore(storage.redisUrl, prefix, silent);
    readerRedis = createRedisStore(storage.redisUrl, prefix, silent);
    assert.ok(await writerRedis.whenReady(5000) && await readerRedis.whenReady(5000));
    a = new RevocationList(writerDb, writerRedis, silent);
    bDb = new WatchedDb(readerPool);
    b = new RevocationList(bDb, readerRedis, silent);
    lists.push(a, b);
    await a.start(NEVER);
    await b.start(NEVER);
    // subscriptions are made asynchronously, in order on one connection: once a probe on the same
    // channel is heard, b's own subscription is in place
    let heard = false;
    readerRedis.subscribe('security-events', (m) => void (m === 'probe' && (heard = true)));
    await eventually('the reader is subscribed', async () => {
      if (heard) return true;
      await writerRedis.publish('security-events', 'probe');
      return false;
    });
  });
  after(async () => {
    await writerRedis?.close();
    await readerRedis?.close();
  });

  it('an event written to Postgres but never published is recovered when the next message shows the gap', async () => {
    const target = id('unpublished');
    // a revocation whose message was lost: in Postgres, not on the bus
    const silentEvent = await writerDb.transaction((tx) => a.store.append(tx, { kind: 'token_revoked', target, actor: 'test', expiresAt: inAnHour() }));
    assert.ok(silentEvent);
    const announced = await a.transaction((_tx, append) => append({ kind: 'client_revoked', target: id('client'), actor: 'test' }));
    assert.ok(announced);
    for (let i = 0; i < 200 && b.version < announced.version; i++) {
      await bDb.nextQuery();
      await bDb.idle();
    }
    assert.equal(b.isClientRevoked(announced.target), true);
    assert.equal(b.isTokenRevoked(target), true, 'caught up from Postgres');
    assert.equal(b.version, announced.version);
  });
});
