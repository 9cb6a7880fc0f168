// Each instance's in-memory view of the revocation list, so checking a token costs no network
// round trip. Postgres holds the truth (security_events); Redis fans each change out. A version
// counter exposes any missed message: the view catches up from Postgres on a gap, after every Redis
// reconnect, and on a periodic check, so it is never stale for long even if a message is lost.
import type { Logger } from '../log.js';
import type { Db } from '../storage/db.js';
import type { FastStore } from '../storage/fast-store.js';
import { SecurityEventStore, type NewSecurityEvent, type SecurityEvent } from './security-events.js';
import type { Queryable } from '../storage/db.js';
import type { AccessTokenClaims } from '../tokens/access-tokens.js';
import { chainClientsOf } from '../tokens/delegation-chain.js';

const CHANNEL = 'security-events';

export type SecurityEventListener = (event: SecurityEvent) => void;

/**
 * Refused for any reason: the token itself revoked, or any client in its chain revoked — the holder
 * (client_id), the subject (for tokens that began with client_credentials, sub is a client), and
 * every actor that exchanged it on the way (act.sub, nested). A chain that cannot be read whole
 * (deeper than the walk) is refused too: a revoked actor must not hide below the walk's end.
 */
export function isAccessTokenRevoked(list: Pick<RevocationList, 'isTokenRevoked' | 'isClientRevoked'>, claims: AccessTokenClaims): boolean {
  if (typeof claims.jti === 'string' && list.isTokenRevoked(claims.jti)) return true;
  const clients = chainClientsOf(claims);
  return !clients || clients.some((c) => list.isClientRevoked(c));
}

export class RevocationList {
  readonly store: SecurityEventStore;
  readonly #db: Db;
  readonly #bus: FastStore;
  readonly #log: Logger;
  readonly #clients = new Set<string>();
  /** jti / family id → expiry (epoch s); pruned once past */
  readonly #tokens = new Map<string, number>();
  readonly #families = new Map<string, number>();
  readonly #listeners: SecurityEventListener[] = [];
  #version = 0;
  #catchingUp: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(db: Db, bus: FastStore, log: Logger) {
    this.#db = db;
    this.store = new SecurityEventStore(db);
    this.#bus = bus;
    this.#log = log;
  }

  /** Load the whole list, then follow changes. */
  async start(checkIntervalMs = 1000): Promise<void> {
    this.#bus.subscribe(CHANNEL, (message) => this.#onMessage(message));
    this.#bus.onReconnect(() => void this.catchUp('redis reconnected'));
    await this.catchUp('start');
    this.#timer = setInterval(() => void this.#periodicCheck(), checkIntervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  get version(): number {
    return this.#version;
  }

  onEvent(listener: SecurityEventListener): void {
    this.#listeners.push(listener);
  }

  isClientRevoked(clientId: string): boolean {
    return this.#clients.has(clientId);
  }

  isTokenRevoked(jti: string): boolean {
    return this.#tokens.has(jti);
  }

  isFamilyRevoked(familyId: string): boolean {
    return this.#families.has(familyId);
  }

  /**
   * Run `fn` in one transaction; every event it appends is applied here and announced to every
   * instance after the commit. Appending a revocation that exists already is a no-op (undefined).
   */
  async transaction<T>(fn: (tx: Queryable, append: (e: NewSecurityEvent) => Promise<SecurityEvent | undefined>) => Promise<T>): Promise<T> {
    const recorded: SecurityEvent[] = [];
    const result = await this.#db.transaction((tx) =>
      fn(tx, async (e) => {
        const r = await this.store.append(tx, e);
        if (r) recorded.push(r);
        return r;
      }),
    );
    for (const e of recorded) {
      this.#apply(e);
      await this.#bus.publish(CHANNEL, JSON.stringify(e)).catch((err: Error) => {
        // the others catch up from Postgres on their periodic check or on reconnect
        this.#log.warn({ version: e.version, reason: err.message }, 'security event not published');
      });
    }
    return result;
  }

  /** Bring the view up to date with Postgres (idempotent; concurrent callers share one run). */
  catchUp(why: string): Promise<void> {
    this.#catchingUp ??= (async () => {
      try {
        const from = this.#version;
        // counter first: a committed counter value N means every event up to N is committed too
        const current = await this.store.currentVersion();
        const events = await this.store.since(from);
        for (const e of events) this.#apply(e);
        this.#version = Math.max(this.#version, current, ...events.map((e) => e.version));
        if (events.length && why !== 'start') this.#log.info({ why, from, to: this.#version, applied: events.length }, 'revocation list caught up');
      } finally {
        this.#catchingUp = undefined;
      }
    })();
    return this.#catchingUp;
  }

  #onMessage(message: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    // anything on the channel that is not an event (null, a number, an array) is ignored, never thrown on:
    // a throw here is an uncaught exception in the Redis client's handler, which ends the process
    if (parsed === null || typeof parsed !== 'object' || !Number.isSafeInteger((parsed as SecurityEvent).version)) return;
    const e = parsed as SecurityEvent;
    const gap = e.version > this.#version + 1;
    // applying is idempotent, so apply at once, and fetch whatever the gap hides
    this.#apply(e);
    if (gap) void this.catchUp('gap').catch((err: Error) => this.#log.warn({ reason: err.message }, 'revocation catch-up failed'));
  }

  async #periodicCheck(): Promise<void> {
    try {
      if ((await this.store.currentVersion()) > this.#version) await this.catchUp('periodic check');
      this.#prune();
    } catch {
      // storage down: readiness fails closed meanwhile; the next check retries
    }
  }

  #apply(e: SecurityEvent): void {
    switch (e.kind) {
      case 'client_revoked':
        this.#clients.add(e.target);
        break;
      case 'token_revoked':
        this.#tokens.set(e.target, e.expiresAt ?? Number.MAX_SAFE_INTEGER);
        break;
      case 'family_revoked':
        this.#families.set(e.target, e.expiresAt ?? Number.MAX_SAFE_INTEGER);
        break;
      case 'client_keys_changed':
        break;
    }
    if (e.version === this.#version + 1) this.#version = e.version;
    for (const listener of this.#listeners) {
      try {
        listener(e);
      } catch (err) {
        this.#log.error({ reason: (err as Error).message }, 'security event listener failed');
      }
    }
  }

  #prune(): void {
    const now = Math.floor(Date.now() / 1000);
    for (const map of [this.#tokens, this.#families]) for (const [k, exp] of map) if (exp < now) map.delete(k);
  }
}
