// The fast, shared side of storage: atomic one-time claims (replay records) and a pub/sub bus that
// fans events out to every instance. Redis in production; an in-process stand-in for one instance.
import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { StorageUnavailable } from './errors.js';

export type BusHandler = (message: string) => void;

export interface FastStore {
  readonly kind: 'redis' | 'memory';
  /** Atomically claim `key` for `ttlSeconds`; false when it was already claimed (a replay). */
  claimOnce(key: string, ttlSeconds: number): Promise<boolean>;
  /** Claim `first`, and `second` only if `first` was free, atomically, in one round trip. */
  claimPair(first: string, second: string, ttlSeconds: number): Promise<[boolean, boolean]>;
  /** Change the expiry of a claimed key (no-op when absent). */
  expire(key: string, ttlSeconds: number): Promise<void>;
  publish(channel: string, message: string): Promise<void>;
  subscribe(channel: string, handler: BusHandler): void;
  /** called after the connection came back: whoever caches derived state must reload it */
  onReconnect(handler: () => void): void;
  isReady(): boolean;
  /** resolves once connected (true) or when the timeout passes first (false) */
  whenReady(timeoutMs: number): Promise<boolean>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function createRedisStore(url: string, prefix: string, log: Logger): FastStore {
  const options = {
    // fail fast instead of queueing: a command that cannot run now must not yield a token later
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 2000,
    retryStrategy: (times: number) => Math.min(50 * 2 ** times, 1000),
    lazyConnect: false,
  };
  const commands = new Redis(url, options);
  commands.defineCommand('sigilClaimPair', {
    numberOfKeys: 2,
    lua: `if not redis.call('SET', KEYS[1], '1', 'EX', ARGV[1], 'NX') then return {0, 0} end
          if redis.call('SET', KEYS[2], '1', 'EX', ARGV[1], 'NX') then return {1, 1} end
          return {1, 0}`,
  });
  const subscriber = new Redis(url, { ...options, enableOfflineQueue: true, commandTimeout: undefined });
  const handlers = new Map<string, BusHandler[]>();
  const reconnectHandlers: Array<() => void> = [];
  let everReady = false;
  let down = false;

  const wrap = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw new StorageUnavailable('redis', err);
    }
  };

  for (const [name, conn] of [['commands', commands], ['subscriber', subscriber]] as const) {
    conn.on('error', (err: Error) => {
      if (!down) log.warn({ store: 'redis', connection: name, reason: err.message }, 'redis connection error');
      down = true;
    });
  }
  commands.on('ready', () => {
    if (everReady && down) log.info({ store: 'redis' }, 'redis reachable again');
    down = false;
  });
  subscriber.on('ready', () => {
    // subscriptions are re-made by ioredis; messages sent while we were away are lost, so tell caches
    if (everReady) for (const h of reconnectHandlers) h();
    everReady = true;
  });
  subscriber.on('message', (channel: string, message: string) => {
    for (const h of handlers.get(channel) ?? []) h(message);
  });

  return {
    kind: 'redis',
    async claimOnce(key, ttlSeconds) {
      const r = await wrap(() => commands.set(prefix + key, '1', 'EX', Math.max(1, Math.ceil(ttlSeconds)), 'NX'));
      return r === 'OK';
    },
    async claimPair(first, second, ttlSeconds) {
      const ttl = Math.max(1, Math.ceil(ttlSeconds));
      const run = commands as unknown as { sigilClaimPair(a: string, b: string, ttl: number): Promise<[number, number]> };
      const [a, b] = await wrap(() => run.sigilClaimPair(prefix + first, prefix + second, ttl));
      return [a === 1, b === 1];
    },
    async expire(key, ttlSeconds) {
      await wrap(() => commands.expire(prefix + key, Math.max(1, Math.ceil(ttlSeconds))));
    },
    async publish(channel, message) {
      await wrap(() => commands.publish(prefix + channel, message));
    },
    subscribe(channel, handler) {
      const full = prefix + channel;
      if (!handlers.has(full)) {
        handlers.set(full, []);
        subscriber.subscribe(full).catch((err: Error) => log.error({ store: 'redis', reason: err.message }, 'subscribe failed'));
      }
      handlers.get(full)!.push(handler);
    },
    onReconnect(handler) {
      reconnectHandlers.push(handler);
    },
    isReady: () => commands.status === 'ready' && subscriber.status === 'ready',
    async whenReady(timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (!(commands.status === 'ready' && subscriber.status === 'ready')) {
        if (Date.now() > until) return false;
        await new Promise((r) => setTimeout(r, 20));
      }
      return true;
    },
    async ping() {
      await wrap(() => commands.ping());
    },
    async close() {
      commands.disconnect();
      subscriber.disconnect();
    },
  };
}

/** In-process stand-in: correct for exactly one instance (JS is single-threaded, so claims are atomic). */
export function createMemoryStore(): FastStore {
  const claims = new Map<string, number>();
  const bus = new EventEmitter();
  bus.setMaxListeners(0);
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [k, exp] of claims) if (exp <= now) claims.delete(k);
  }, 10_000);
  sweep.unref();
  return {
    kind: 'memory',
    async claimOnce(key, ttlSeconds) {
      const exp = claims.get(key);
      if (exp !== undefined && exp > Date.now()) return false;
      claims.set(key, Date.now() + Math.max(1, Math.ceil(ttlSeconds)) * 1000);
      return true;
    },
    async claimPair(first, second, ttlSeconds) {
      if (!(await this.claimOnce(first, ttlSeconds))) return [false, false];
      return [true, await this.claimOnce(second, ttlSeconds)];
    },
    async expire(key, ttlSeconds) {
      if (claims.has(key)) claims.set(key, Date.now() + Math.max(1, Math.ceil(ttlSeconds)) * 1000);
    },
    async publish(channel, message) {
      // asynchronous like Redis, so callers never depend on synchronous delivery
      setImmediate(() => bus.emit(channel, message));
    },
    subscribe(channel, handler) {
      bus.on(channel, handler);
    },
    onReconnect() {},
    isReady: () => true,
    whenReady: async () => true,
    async ping() {},
    async close() {
      clearInterval(sweep);
      bus.removeAllListeners();
    },
  };
}
