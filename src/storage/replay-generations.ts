// Keeps this instance's replay state (replay-state.ts) true to Redis. Every shard's generation
// marker is read, with the run_id of the Redis holding it, at start, whenever a connection that
// answers claims closes or becomes ready, and on every readiness check (500 ms): a marker that is
// missing, older than the one expected, or written by another Redis process means the shard's
// records were lost, and the next generation starts with a cut-off. Postgres records that
// generations exist, so a marker missing at start is a loss while every instance was down, not a
// first start.
//
// Which claim answers are trusted. ioredis writes the commands of a new connection (resent
// unanswered ones, queued ones) when it turns 'ready', and emits 'ready' (and 'close') on
// process.nextTick after the status change; an answer needs a network round trip, so it is handled
// after that event has moved the store's connection epoch. A claim is trusted only when it was sent
// at an epoch this class verified, and no change happened before its answer: an answer from a
// Redis that restarted, failed over or was reached anew is never trusted before it is verified.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.js';
import type { Db } from './db.js';
import { StorageUnavailable } from './errors.js';
import type { MarkerRead, ReplayShards } from './fast-store.js';
import { firstAcceptedIat, markerPrefix, parseMarker, REPLAY_SHARDS, ReplayState } from './replay-state.js';

const QUARANTINE = {
  description: 'the server lost its replay records and refuses anything dated before it noticed; retry in a few seconds with a new assertion and proof',
  detail: 'replay records lost: JWT dated before the cut-off, during the quarantine',
};
const NOT_VERIFIED = {
  description: 'the server is verifying its replay records after a Redis reconnection; retry shortly',
  detail: 'replay records not verified since the last Redis reconnection',
};

export class ReplayGenerations {
  readonly state: ReplayState;
  readonly #store: ReplayShards;
  readonly #db: Db;
  readonly #log: Logger;
  readonly #now: () => number;
  #verifiedEpoch = -1;
  /** Postgres knows generations exist (cached once true) */
  #recorded = false;
  #running: Promise<void> | undefined;
  #policyChecked = false;
  #again = false;
  /** per shard: a settlement in progress, so a burst of claims meeting a new marker settles it once */
  readonly #settling = new Map<number, Promise<void>>();

  constructor(store: ReplayShards, db: Db, log: Logger, now: () => number = Date.now) {
    this.#store = store;
    this.#db = db;
    this.#log = log;
    this.#now = now;
    this.state = new ReplayState(now);
    store.onConnectionChange(() => void this.check().catch(() => {}));
  }

  /** The ticket to send a claim with: undefined while claims cannot be trusted. */
  ticket(): number | undefined {
    const epoch = this.#store.connectionEpoch();
    return epoch === this.#verifiedEpoch ? epoch : undefined;
  }

  /** Whether the answer to a claim sent with `ticket` is trusted: no connection changed since. */
  trusted(ticket: number): boolean {
    return ticket === this.#verifiedEpoch && ticket === this.#store.connectionEpoch();
  }

  /** verified, and not refusing service after a loss */
  ready(): boolean {
    return this.ticket() !== undefined && this.state.quarantineEndsMs() === 0;
  }

  /** Verify every shard's marker; runs again at once if asked while running. Rejects when Redis or Postgres failed. */
  check(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false;
          await this.#checkOnce();
        } while (this.#again);
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  /** A claim in `shard` found `read` instead of the marker it expected: adopt it or start the next generation. */
  reconcile(shard: number, read: MarkerRead): Promise<void> {
    const pending = this.#settling.get(shard);
    if (pending) return pending;
    const settling = this.#settle(shard, read).finally(() => this.#settling.delete(shard));
    this.#settling.set(shard, settling);
    return settling;
  }

  /** The error for a claim that cannot be trusted now. */
  notVerified(cause?: unknown): StorageUnavailable {
    return new StorageUnavailable('redis', cause, NOT_VERIFIED);
  }

  /** The error for a JWT dated before the cut-off while the cut-off second has not come yet. */
  quarantined(): StorageUnavailable {
    return new StorageUnavailable('redis', undefined, QUARANTINE);
  }

  async #checkOnce(): Promise<void> {
    const epoch = this.#store.connectionEpoch();
    const known = Array.from({ length: REPLAY_SHARDS }, (_, s) => this.state.marker(s));
    const reads = await Promise.all(known.map((_, s) => this.#store.readMarker(s)));
    // a shard a claim settled meanwhile was read before that: the next check reads it again
    await Promise.all(reads.map((read, s) => (this.state.marker(s) === known[s] ? this.#settle(s, read) : undefined)));
    // recorded before any claim is trusted: from now on a Redis without markers has lost them
    if (!this.#recorded) {
      await this.#db.query('INSERT INTO replay_generations (id) VALUES (1) ON CONFLICT (id) DO NOTHING');
      this.#recorded = true;
    }
    if (!this.#policyChecked) {
      this.#policyChecked = true;
      void this.#store.evictionPolicies().then((policies) => {
        const evicting = policies.filter((p) => p !== 'noeviction');
        // an evicting Redis drops claims but keeps the markers every claim touches: a loss no one sees
        if (evicting.length) this.#log.error({ store: 'redis', maxmemory_policy: evicting[0] }, 'Redis may evict replay records: set maxmemory-policy noeviction');
      }, () => {
        this.#policyChecked = false;
      });
    }
    if (this.#store.connectionEpoch() === epoch) this.#verifiedEpoch = epoch;
  }

  async #everRecorded(): Promise<boolean> {
    if (!this.#recorded) this.#recorded = (await this.#db.query('SELECT 1 FROM replay_generations WHERE id = 1')).rowCount > 0;
    return this.#recorded;
  }

  async #settle(shard: number, read: MarkerRead): Promise<void> {
    const found = parseMarker(read.found);
    const expected = this.state.marker(shard);
    const everRecorded = read.found || expected ? true : await this.#everRecorded();
    // a value Sigil did not write is no marker of Sigil's: its claims cannot be vouched for
    const assessment = read.found && !found ? 'lost' : this.state.assess(shard, found, read.runId, everRecorded);
    switch (assessment) {
      case 'same':
        return;
      case 'adopt': {
        this.state.adopt(shard, found!);
        if (expected && found!.cutoffMs > expected.cutoffMs) {
          this.#log.warn({ shard, cutoff: new Date(found!.cutoffMs).toISOString() }, 'replay records were lost (noticed by another instance); refusing assertions and proofs issued before the cut-off');
        }
        return;
      }
      case 'first':
        await this.#start(shard, read.found, 0);
        return;
      case 'lost': {
        const now = this.#now();
        const why = !found ? (read.found ? 'unknown marker' : 'marker missing')
          : found.runId !== read.runId ? 'redis restarted or failed over' : 'older generation';
        this.state.noteLoss(shard, now);
        await this.#start(shard, read.found, now);
        this.#log.warn(
          { shard, reason: why, cutoff: new Date(now).toISOString(), refuse_iat_before: firstAcceptedIat(this.state.cutoffMs(shard)) },
          'replay records were lost; refusing assertions and proofs issued before the cut-off',
        );
        void this.#db.query('UPDATE replay_generations SET last_loss_at = now(), last_loss_cutoff_ms = $1 WHERE id = 1', [now]).catch(() => {});
      }
    }
  }

  /** Start the next generation of `shard` (instances race; whichever marker is there afterwards is adopted). */
  async #start(shard: number, replacing: string | undefined, cutoffMs: number): Promise<void> {
    const generation = randomBytes(8).toString('hex');
    const result = await this.#store.startGeneration(shard, replacing, markerPrefix(generation, this.#now(), cutoffMs));
    const marker = parseMarker(result.found);
    if (!marker || marker.runId !== result.runId) throw this.notVerified(new Error(`shard ${shard}: no usable generation marker after starting one`));
    this.state.adopt(shard, marker);
  }
}
