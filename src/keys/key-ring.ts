// The signing-key schedule every instance follows without a restart. A key's state follows from the
// activation times alone, so all instances agree without talking to each other:
//   next      published in the JWKS, not signing yet: activates once every JWKS cache has it
//   active    signs (the key with the latest activation time in the past)
//   retiring  replaced, still published until every token it signed has expired
//   retired   gone from the JWKS (and later from the database)
import type { JWK } from 'jose';
import type { SigningAlg } from '../config.js';
import type { Logger } from '../log.js';
import type { Db } from '../storage/db.js';
import type { FastStore } from '../storage/fast-store.js';
import { deleteKeys, ensureInitialKey, readKeys, stageNextKey, type StoredKey } from './signing-keys.js';

export type KeyState = 'next' | 'active' | 'retiring' | 'retired';

export interface KeyView {
  kid: string;
  alg: SigningAlg;
  state: KeyState;
  created_at: string;
  activates_at: string;
  /** when it stops being published (set once a successor is scheduled) */
  retires_at?: string;
}

export interface KeySnapshot {
  /** the key that signs now */
  active: StoredKey;
  /** private JWKs handed to oidc-provider: the active key, then the other published ones */
  privateJwks: { keys: JWK[] };
  /** public JWKs every verifier accepts (next, active, retiring) */
  publicJwks: JWK[];
  /** epoch ms of the next state change, if any is scheduled */
  nextChangeAt?: number;
  views: KeyView[];
}

const CHANNEL = 'signing-keys';

export interface KeyTimings {
  /** how long gateways may cache the JWKS: a staged key waits at least this long before signing */
  jwksMaxAgeSeconds: number;
  /** slack for instances to notice a new key (they also reload on a bus message) */
  propagationSeconds: number;
  /** how long a replaced key stays published: the longest life of anything it signed */
  retireAfterSeconds: number;
}

/** Derive every key's state at `now` (pure: the same rows give the same answer on every instance). */
export function schedule(keys: StoredKey[], now: number, t: KeyTimings): KeySnapshot | undefined {
  const sorted = [...keys].sort((a, b) => a.activateAt.getTime() - b.activateAt.getTime());
  const started = sorted.filter((k) => k.activateAt.getTime() <= now);
  const active = started.at(-1);
  if (!active) return undefined;
  const changes: number[] = [];
  const views: KeyView[] = sorted.map((k, i) => {
    const successor = sorted[i + 1];
    const retiresAt = successor ? successor.activateAt.getTime() + t.retireAfterSeconds * 1000 : undefined;
    let state: KeyState;
    if (k.activateAt.getTime() > now) state = 'next';
    else if (k === active) state = 'active';
    else if (retiresAt !== undefined && retiresAt > now) state = 'retiring';
    else state = 'retired';
    if (k.activateAt.getTime() > now) changes.push(k.activateAt.getTime());
    if (retiresAt !== undefined && retiresAt > now) changes.push(retiresAt);
    return {
      kid: k.kid,
      alg: k.alg,
      state,
      created_at: k.createdAt.toISOString(),
      activates_at: k.activateAt.toISOString(),
      ...(retiresAt !== undefined ? { retires_at: new Date(retiresAt).toISOString() } : {}),
    };
  });
  const published = sorted.filter((_, i) => views[i]!.state !== 'retired');
  return {
    active,
    privateJwks: { keys: [active, ...published.filter((k) => k !== active)].map((k) => k.privateJwk) },
    publicJwks: published.map((k) => k.publicJwk),
    nextChangeAt: changes.length ? Math.min(...changes) : undefined,
    views,
  };
}

export class KeyRing {
  #keys: StoredKey[] = [];
  #snapshot!: KeySnapshot;
  #timer: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  readonly #listeners: Array<(s: KeySnapshot) => void> = [];

  constructor(
    private readonly db: Db,
    private readonly kek: Buffer,
    private readonly alg: SigningAlg,
    private readonly timings: KeyTimings,
    private readonly bus: FastStore,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await ensureInitialKey(this.db, this.alg, this.kek);
    await this.reload();
    this.bus.subscribe(CHANNEL, () => void this.reload().catch((err: Error) => this.log.error({ reason: err.message }, 'signing keys reload failed')));
    this.bus.onReconnect(() => void this.reload().catch(() => {}));
    // a missed bus message costs at most this much of the propagation slack
    this.#poll = setInterval(() => void this.reload().catch(() => {}), (this.timings.propagationSeconds * 1000) / 3);
    this.#poll.unref();
  }

  stop(): void {
    clearTimeout(this.#timer);
    clearInterval(this.#poll);
  }

  get current(): KeySnapshot {
    return this.#snapshot;
  }

  /** Called with every new snapshot whose published keys or active key changed. */
  onChange(listener: (s: KeySnapshot) => void): void {
    this.#listeners.push(listener);
  }

  /** Seconds a JWKS may be cached: never past the next key change. */
  jwksMaxAge(now = Date.now()): number {
    const next = this.#snapshot.nextChangeAt;
    const until = next === undefined ? Infinity : Math.max(0, Math.floor((next - now) / 1000));
    return Math.min(this.timings.jwksMaxAgeSeconds, until);
  }

  async reload(): Promise<void> {
    this.#keys = await readKeys(this.db, this.kek);
    this.#recompute();
  }

  /** Stage a new key; it signs once every cache of the JWKS has had the chance to see it. */
  async rotate(): Promise<KeyView | undefined> {
    const activateAt = new Date(Date.now() + (this.timings.jwksMaxAgeSeconds + this.timings.propagationSeconds) * 1000);
    const kid = await stageNextKey(this.db, this.alg, this.kek, activateAt);
    if (!kid) return undefined;
    await this.reload();
    await this.bus.publish(CHANNEL, kid).catch(() => {});
    return this.#snapshot.views.find((v) => v.kid === kid);
  }

  #recompute(): void {
    const now = Date.now();
    const next = schedule(this.#keys, now, this.timings);
    if (!next) throw new Error('no signing key is active');
    const before = this.#snapshot;
    this.#snapshot = next;
    const changed = !before || before.active.kid !== next.active.kid || before.publicJwks.map((k) => k.kid).join() !== next.publicJwks.map((k) => k.kid).join();
    if (changed) {
      if (before) this.log.info({ active: next.active.kid, published: next.publicJwks.map((k) => k.kid) }, 'signing keys changed');
      for (const l of this.#listeners) l(next);
    }
    // retired keys leave the database a day later
    const stale = next.views.filter((v) => v.state === 'retired' && v.retires_at && Date.parse(v.retires_at) < now - 86_400_000).map((v) => v.kid);
    if (stale.length) void deleteKeys(this.db, stale).catch(() => {});
    clearTimeout(this.#timer);
    if (next.nextChangeAt !== undefined) {
      // setTimeout caps at ~24.8 days; a later change is picked up by a later timer
      const delay = Math.min(Math.max(0, next.nextChangeAt - now) + 50, 2 ** 31 - 1);
      this.#timer = setTimeout(() => this.#recompute(), delay);
      this.#timer.unref();
    }
  }
}
