// What one instance knows about the replay records it keeps in Redis, and what follows when they
// were lost. Redis is split into shards; each holds a generation marker next to its claims. Every
// claim checks, in the same script, that the marker is the one this instance expects: a Redis
// that lost its data (restart without persistence, FLUSHDB, eviction, failover to a lagging
// replica) no longer has it, and the instance learns of the loss from that very claim.
//
// A loss noticed at T cannot be repaired: the jtis used before it are gone. What can be done is to
// refuse everything that could have been used before it. An assertion or proof used at t < T had
// iat <= t + 5 s (Sigil refuses iat further ahead), so every iat below floor(T/1000) + 6 is refused
// until no JWT used before T can still be presented (assertion exp <= 300 s ahead + 5 s tolerance;
// proofs 60 + 5 s). Until that cut-off second has come (and a JWT made just before it has arrived),
// the instance answers 503 rather than 401, so that a client making a fresh assertion and proof for
// each request only ever sees a retry.
// Pure: the clock is injected.

/** the replay records are spread over this many shards (hash slots in a cluster); fixed, part of the key layout */
export const REPLAY_SHARDS = 16;
/** how far ahead of the server's clock an assertion's or a proof's iat may be (both checks use it) */
export const IAT_SKEW_SECONDS = 5;
/** the longest a used assertion or proof can still be presented: assertion exp 300 s ahead + 5 s tolerance */
export const REPLAY_WINDOW_SECONDS = 305;
/** past the cut-off second, how long a JWT made just before it may still be in flight: told to retry, not refused */
export const QUARANTINE_GRACE_MS = 2000;

/** A shard's generation marker: `<generation>:<created ms>:<cut-off ms>:<run id of the Redis that holds it>` */
export interface GenerationMarker {
  raw: string;
  generation: string;
  createdMs: number;
  /** when the loss that started this generation was noticed; 0 for the first generation */
  cutoffMs: number;
  /** Redis's run_id when the marker was written: a Redis process that did not write it holds copied or restored data */
  runId: string;
}

export function parseMarker(raw: string | undefined): GenerationMarker | undefined {
  if (!raw) return undefined;
  const m = /^([0-9a-f]{1,64}):(\d{1,16}):(\d{1,16}):([0-9a-f]{1,64})$/.exec(raw);
  if (!m) return undefined;
  return { raw, generation: m[1]!, createdMs: Number(m[2]), cutoffMs: Number(m[3]), runId: m[4]! };
}

/** The marker written for a new generation, less the run id (the Redis that stores it appends its own). */
export function markerPrefix(generation: string, createdMs: number, cutoffMs: number): string {
  return `${generation}:${createdMs}:${cutoffMs}`;
}

/**
 * The shard of a client's claims (FNV-1a). Every one-time id a request claims belongs to one client,
 * whichever path claims it, so a request's assertion and proof share a shard (one script, one slot).
 */
export function shardOf(clientId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < clientId.length; i++) {
    h ^= clientId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % REPLAY_SHARDS;
}

/** The first iat (seconds) accepted after a loss noticed at `cutoffMs`: above any iat used before it. */
export function firstAcceptedIat(cutoffMs: number): number {
  return Math.floor(cutoffMs / 1000) + IAT_SKEW_SECONDS + 1;
}

/** Until when (epoch ms) JWTs dated before the cut-off are told to retry rather than refused. */
export function quarantineEndMs(cutoffMs: number): number {
  return firstAcceptedIat(cutoffMs) * 1000 + QUARANTINE_GRACE_MS;
}

/** What is to be done with a shard's marker as found in Redis. */
export type MarkerAssessment =
  /** the expected one: nothing to do */
  | 'same'
  /** another instance started a newer generation (it noticed a loss first, or this one is starting) */
  | 'adopt'
  /** the records of this shard were lost: start a new generation with a cut-off */
  | 'lost'
  /** nothing was ever recorded: start the first generation, without a cut-off */
  | 'first';

/**
 * How a claimed id is judged: `ok`; `predates-loss`, the JWT was issued before a loss and could have
 * been used already; `quarantine`, the same but within the quarantine, when a well-behaved client
 * could not have done better (answered 503: it retries with a fresh JWT).
 */
export type Judgement = 'ok' | 'predates-loss' | 'quarantine';

export class ReplayState {
  readonly #now: () => number;
  readonly #markers: Array<GenerationMarker | undefined> = new Array(REPLAY_SHARDS).fill(undefined);
  /** per shard: the latest loss this instance knows of (ms), 0 for none; never moves back */
  readonly #cutoffs: number[] = new Array(REPLAY_SHARDS).fill(0);

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** the marker a claim in `shard` must find; undefined before this instance has verified it */
  marker(shard: number): GenerationMarker | undefined {
    return this.#markers[shard];
  }

  cutoffMs(shard: number): number {
    return this.#cutoffs[shard]!;
  }

  assess(shard: number, found: GenerationMarker | undefined, runId: string, everRecorded: boolean): MarkerAssessment {
    const expected = this.#markers[shard];
    if (!found) return expected || everRecorded ? 'lost' : 'first';
    // written by another Redis process: data restored from a snapshot, or a replica promoted
    if (found.runId !== runId) return 'lost';
    if (expected && found.raw === expected.raw) return 'same';
    // older than the generation already known here: this Redis went back in time
    if (expected && found.createdMs < expected.createdMs) return 'lost';
    return 'adopt';
  }

  /** Expect `marker` from now on; its cut-off applies unless a later one is known already. */
  adopt(shard: number, marker: GenerationMarker): void {
    this.#markers[shard] = marker;
    if (marker.cutoffMs > this.#cutoffs[shard]!) this.#cutoffs[shard] = marker.cutoffMs;
  }

  /** A loss this instance noticed itself at `atMs` (whichever instance's marker wins the race). */
  noteLoss(shard: number, atMs: number): void {
    if (atMs > this.#cutoffs[shard]!) this.#cutoffs[shard] = atMs;
  }

  /** Judge a JWT (iat in seconds, undefined when it has none) whose jti was just claimed in `shard`. */
  judge(shard: number, iat: number | undefined): Judgement {
    const cutoff = this.#cutoffs[shard]!;
    if (cutoff === 0) return 'ok';
    const first = firstAcceptedIat(cutoff);
    if (iat !== undefined && iat >= first) return 'ok';
    const now = this.#now();
    // past the window nothing used before the loss is still valid: the usual checks suffice
    if (now >= (first + REPLAY_WINDOW_SECONDS) * 1000) return 'ok';
    return now < quarantineEndMs(cutoff) ? 'quarantine' : 'predates-loss';
  }

  /** epoch ms until which this instance refuses service (0 when it does not): the latest quarantine end */
  quarantineEndsMs(): number {
    let end = 0;
    for (const cutoff of this.#cutoffs) if (cutoff) end = Math.max(end, quarantineEndMs(cutoff));
    // asked on every gated request: no clock read while no loss is known
    return end > 0 && end > this.#now() ? end : 0;
  }
}
