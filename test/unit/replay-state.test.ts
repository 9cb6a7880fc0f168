// The replay generation and cut-off logic, with an injected clock: when a marker found in Redis is
// adopted or means a loss, and how JWTs are judged after a loss (refused, told to retry, accepted).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  firstAcceptedIat, IAT_SKEW_SECONDS, markerPrefix, QUARANTINE_GRACE_MS, quarantineEndMs, parseMarker, REPLAY_SHARDS, REPLAY_WINDOW_SECONDS, ReplayState, shardOf, type GenerationMarker,
} from '../../src/storage/replay-state.js';
import { testClock } from '../support/clock.js';

const RUN = 'a'.repeat(40);
const OTHER_RUN = 'b'.repeat(40);
const marker = (generation: string, createdMs: number, cutoffMs: number, runId = RUN): GenerationMarker =>
  parseMarker(`${markerPrefix(generation, createdMs, cutoffMs)}:${runId}`)!;

const clock = testClock;

describe('replay generation markers', () => {
  it('parse what markerPrefix + a run id make, and nothing else', () => {
    const m = parseMarker(`${markerPrefix('0f1e', 1_700_000_000_123, 1_700_000_000_000)}:${RUN}`);
    assert.deepEqual(m, { raw: `0f1e:1700000000123:1700000000000:${RUN}`, generation: '0f1e', createdMs: 1_700_000_000_123, cutoffMs: 1_700_000_000_000, runId: RUN });
    for (const bad of [undefined, '', '1', 'g:1:2', `0f1e:1:2:${RUN}:x`, `0F1E:1:2:${RUN}`, `0f1e:-1:2:${RUN}`, `0f1e:1:2:`, `zz:1:2:${RUN}`]) {
      assert.equal(parseMarker(bad), undefined, `${bad} is not a marker`);
    }
  });

  it('shardOf() is stable and spreads clients over every shard', () => {
    assert.equal(shardOf('client-a'), shardOf('client-a'));
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const s = shardOf(`client-${i}`);
      assert.ok(Number.isInteger(s) && s >= 0 && s < REPLAY_SHARDS);
      seen.add(s);
    }
    assert.equal(seen.size, REPLAY_SHARDS);
  });
});

describe('ReplayState.assess: what a marker found in Redis means', () => {
  const first = marker('01', 1000, 0);

  it('at start: no marker is a first start, unless Postgres knows generations existed (lost while down)', () => {
    const s = new ReplayState(() => 5000);
    assert.equal(s.assess(0, undefined, RUN, false), 'first');
    assert.equal(s.assess(0, undefined, RUN, true), 'lost');
  });

  it('at start: a marker written by this Redis process is adopted; one written by another process means restored data', () => {
    const s = new ReplayState(() => 5000);
    assert.equal(s.assess(0, first, RUN, true), 'adopt');
    assert.equal(s.assess(0, first, OTHER_RUN, true), 'lost');
  });

  it('running: the expected marker is fine; a missing one is a loss whatever Postgres says', () => {
    const s = new ReplayState(() => 5000);
    s.adopt(3, first);
    assert.equal(s.assess(3, first, RUN, false), 'same');
    assert.equal(s.assess(3, undefined, RUN, false), 'lost');
    assert.equal(s.assess(3, first, OTHER_RUN, false), 'lost', 'the same marker on a restarted or promoted Redis');
  });

  it('running: a newer marker (another instance started a generation) is adopted; an older one is a loss', () => {
    const s = new ReplayState(() => 5000);
    const current = marker('02', 2000, 1900);
    s.adopt(3, current);
    assert.equal(s.assess(3, marker('03', 3000, 2900), RUN, true), 'adopt');
    assert.equal(s.assess(3, marker('01', 1000, 0), RUN, true), 'lost', 'Redis went back to an older generation');
    assert.equal(s.assess(4, marker('01', 1000, 0), RUN, true), 'adopt', 'shards are independent');
  });
});

describe('ReplayState.judge: after a loss noticed at T', () => {
  const T = 1_700_000_000_400;
  const cutoffSecond = Math.floor(T / 1000) + IAT_SKEW_SECONDS + 1;

  it('the first accepted iat is above anything a JWT used before T could carry (iat <= use + 5 s)', () => {
    assert.equal(firstAcceptedIat(T), cutoffSecond);
    // used at the last instant before T, dated as far ahead as Sigil accepts
    const latestUsedIat = Math.floor((T - 1) / 1000) + IAT_SKEW_SECONDS;
    assert.ok(latestUsedIat < firstAcceptedIat(T));
  });

  it('without a loss every JWT is judged ok, with or without iat', () => {
    const s = new ReplayState(() => T);
    s.adopt(0, marker('01', 1000, 0));
    assert.equal(s.judge(0, undefined), 'ok');
    assert.equal(s.judge(0, 1), 'ok');
    assert.equal(s.quarantineEndsMs(), 0);
  });

  it('until the cut-off second (and a JWT made just before it has arrived): anything dated before it is told to retry, never refused', () => {
    const c = clock(T);
    const s = new ReplayState(c.now);
    s.adopt(0, marker('02', T, T));
    const end = cutoffSecond * 1000 + QUARANTINE_GRACE_MS;
    assert.equal(quarantineEndMs(T), end);
    assert.equal(s.judge(0, cutoffSecond - 1), 'quarantine');
    assert.equal(s.judge(0, Math.floor(T / 1000)), 'quarantine', 'a JWT made right now');
    assert.equal(s.judge(0, undefined), 'quarantine', 'an assertion without iat');
    assert.equal(s.judge(0, cutoffSecond), 'ok', 'a client clock ahead by the skew Sigil accepts');
    assert.equal(s.quarantineEndsMs(), end);
    c.set(end - 1);
    assert.equal(s.judge(0, cutoffSecond - 1), 'quarantine', 'made in the last instant before the cut-off second, still in flight');
    assert.equal(s.judge(0, cutoffSecond), 'ok');
    assert.equal(s.quarantineEndsMs(), end);
  });

  it('after the quarantine: what is dated before the cut-off second is refused, a fresh JWT accepted, for the whole window', () => {
    const c = clock(cutoffSecond * 1000 + QUARANTINE_GRACE_MS);
    const s = new ReplayState(c.now);
    s.adopt(0, marker('02', T, T));
    assert.equal(s.quarantineEndsMs(), 0);
    assert.equal(s.judge(0, cutoffSecond - 1), 'predates-loss');
    assert.equal(s.judge(0, undefined), 'predates-loss', 'iat is required while a used assertion could still be valid');
    assert.equal(s.judge(0, cutoffSecond), 'ok');
    assert.equal(s.judge(1, cutoffSecond - 1), 'ok', 'other shards did not lose anything');
    c.set((cutoffSecond + REPLAY_WINDOW_SECONDS) * 1000 - 1);
    assert.equal(s.judge(0, cutoffSecond - 1), 'predates-loss', 'still within the window');
    c.set((cutoffSecond + REPLAY_WINDOW_SECONDS) * 1000);
    assert.equal(s.judge(0, cutoffSecond - 1), 'ok', 'everything used before the loss has expired');
    assert.equal(s.judge(0, undefined), 'ok');
  });

  it('adoption never moves a cut-off earlier, and a loss noticed here raises it', () => {
    const c = clock(T);
    const s = new ReplayState(c.now);
    s.adopt(0, marker('02', T, T));
    s.adopt(0, marker('03', T + 10, T - 60_000));
    assert.equal(s.cutoffMs(0), T);
    assert.equal(s.marker(0)?.generation, '03', 'the marker to expect is still the latest');
    s.adopt(0, marker('04', T + 20, 0));
    assert.equal(s.cutoffMs(0), T);
    s.noteLoss(0, T + 2000);
    assert.equal(s.cutoffMs(0), T + 2000);
    s.noteLoss(0, T);
    assert.equal(s.cutoffMs(0), T + 2000);
    c.set(quarantineEndMs(T + 2000));
    assert.equal(s.judge(0, firstAcceptedIat(T)), 'predates-loss', 'judged against the latest loss');
  });

  it('quarantine lasts until the latest cut-off second of any shard', () => {
    const c = clock(T);
    const s = new ReplayState(c.now);
    s.adopt(0, marker('02', T, T));
    s.adopt(5, marker('03', T + 3000, T + 3000));
    assert.equal(s.quarantineEndsMs(), quarantineEndMs(T + 3000));
    c.set(quarantineEndMs(T));
    assert.ok(s.quarantineEndsMs() > 0, 'shard 5 is still in its quarantine');
    c.set(quarantineEndMs(T + 3000));
    assert.equal(s.quarantineEndsMs(), 0);
  });
});
