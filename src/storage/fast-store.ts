// The fast, shared side of storage: a pub/sub bus that fans events out to every instance and, with
// Redis, the replay shards (one-time claims of jtis, each shard vouched for by a generation marker;
// see replay-state.ts). Redis or a Redis Cluster in production; an in-process bus for one instance.
import { EventEmitter } from 'node:events';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { RedisClusterSettings } from '../config.js';
import type { Logger } from '../log.js';
import { StorageUnavailable } from './errors.js';
import { REPLAY_SHARDS } from './replay-state.js';

export type BusHandler = (message: string) => void;

export interface FastStore {
  readonly kind: 'redis' | 'memory';
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

/** A shard's generation marker as read (undefined when missing), with the run_id of the Redis that answered. */
export interface MarkerRead {
  found: string | undefined;
  runId: string;
}

/**
 * A claim's answer: how many of the ids were claimed (in order, up to the first that was taken), or,
 * when the shard's marker was not the one expected, what was there instead (and nothing was claimed).
 */
export type ShardClaim = { claimed: number } | ({ claimed: undefined } & MarkerRead);

/** The replay shards in Redis (keys of a shard share a hash slot: one script touches them all). */
export interface ReplayShards {
  /**
   * Changes whenever a connection that answers claims closes or becomes ready (a reconnection, a
   * new cluster node). An answer to a claim sent before a change may come from a Redis that was
   * not verified; replay-generations.ts trusts none of them.
   */
  connectionEpoch(): number;
  onConnectionChange(handler: () => void): void;
  /** claim `ids` in order, each only while every earlier one was free, if the marker is `expected` */
  claim(shard: number, expected: string, ids: string[], ttlSeconds: number): Promise<ShardClaim>;
  readMarker(shard: number): Promise<MarkerRead>;
  /** replace the marker, if it still is `replacing` (undefined: missing), by `prefix` + the run_id; answers what is there now */
  startGeneration(shard: number, replacing: string | undefined, prefix: string): Promise<MarkerRead & { found: string }>;
  /** change the expiry of a claimed id (no-op when absent) */
  expire(shard: number, id: string, ttlSeconds: number): Promise<void>;
  /** each (master) node's maxmemory-policy, when it has a memory limit: only noeviction keeps every claim */
  evictionPolicies(): Promise<string[]>;
}

export interface RedisStore extends FastStore, ReplayShards {
  readonly kind: 'redis';
}

/** the run_id of the Redis process running the script: it changes with every restart */
const RUN_ID = `string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')`;

// KEYS[1] the shard's marker, KEYS[2..] the ids; ARGV[1] the marker expected, ARGV[2] ttl (s)
const CLAIM_LUA = `local marker = redis.call('GET', KEYS[1])
if marker ~= ARGV[1] then return {-1, marker or '', ${RUN_ID}} end
for i = 2, #KEYS do
  if not redis.call('SET', KEYS[i], '1', 'EX', ARGV[2], 'NX') then return {i - 2} end
end
return {#KEYS - 1}`;

const READ_MARKER_LUA = `return {redis.call('GET', KEYS[1]) or '', ${RUN_ID}}`;

// ARGV[1] the marker being replaced ('' for none), ARGV[2] the new marker less its run id
const START_GENERATION_LUA = `local run = ${RUN_ID}
local marker = redis.call('GET', KEYS[1]) or ''
if marker == ARGV[1] then
  marker = ARGV[2] .. ':' .. run
  redis.call('SET', KEYS[1], marker)
end
return {marker, run}`;

type Scripted = Record<'sigilClaim' | 'sigilReadMarker' | 'sigilStartGeneration', (...args: Array<string | number>) => Promise<unknown[]>>;

/** ioredis keeps a Cluster's subscriber connection private; it is replaced (not reconnected) when its node goes */
function clusterSubscriberOf(cluster: Cluster): Redis | undefined {
  return (cluster as unknown as { subscriber?: { getInstance(): Redis | null } }).subscriber?.getInstance() ?? undefined;
}

export function createRedisStore(target: string | RedisClusterSettings, prefix: string, log: Logger): RedisStore {
  const connection: RedisOptions = {
    connectTimeout: 2000,
    commandTimeout: 2000,
    maxRetriesPerRequest: 1,
  };
  // fail fast instead of queueing: a command that cannot run now must not yield a token later
  const single = { ...connection, enableOfflineQueue: false, retryStrategy: (times: number) => Math.min(50 * 2 ** times, 1000), lazyConnect: false };
  const clusterOptions = (enableOfflineQueue: boolean) => typeof target === 'string' ? undefined : {
    enableOfflineQueue,
    clusterRetryStrategy: (times: number) => Math.min(50 * 2 ** times, 1000),
    slotsRefreshTimeout: 2000,
    redisOptions: { ...connection, username: target.username, password: target.password, ...(target.tls ? { tls: {} } : {}) },
  };
  const cluster = typeof target === 'string' ? undefined : new Cluster(target.nodes, clusterOptions(false));
  const commands: Redis | Cluster = cluster ?? new Redis(target as string, single);
  commands.defineCommand('sigilClaim', { lua: CLAIM_LUA });
  commands.defineCommand('sigilReadMarker', { numberOfKeys: 1, lua: READ_MARKER_LUA });
  commands.defineCommand('sigilStartGeneration', { numberOfKeys: 1, lua: START_GENERATION_LUA });
  const scripts = commands as unknown as Scripted;
  // subscriptions on connections of their own, queued until connected (made once, re-made by ioredis)
  const subscriberCluster = typeof target === 'string' ? undefined : new Cluster(target.nodes, clusterOptions(true));
  const subscriber: Redis | Cluster = subscriberCluster ?? new Redis(target as string, { ...single, enableOfflineQueue: true, commandTimeout: undefined });

  const handlers = new Map<string, BusHandler[]>();
  // anyone who can publish on the channel chooses the message: a handler that throws on it is logged,
  // never an uncaught exception in ioredis's event (which would end the process)
  const deliver = (channel: string, message: string) => {
    for (const h of handlers.get(channel) ?? []) {
      try {
        h(message);
      } catch (err) {
        log.error({ store: 'redis', channel, reason: (err as Error).message }, 'a pub/sub message handler failed');
      }
    }
  };
  const reconnectHandlers: Array<() => void> = [];
  const connectionHandlers: Array<() => void> = [];
  let epoch = 0;
  let everReady = false;
  let down = false;

  const markerKeys = Array.from({ length: REPLAY_SHARDS }, (_, s) => `${prefix}{replay-${s}}:generation`);
  const claimKey = (shard: number, id: string) => `${prefix}{replay-${shard}}:id:${id}`;

  const wrap = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw new StorageUnavailable('redis', err);
    }
  };
  const changed = () => {
    epoch++;
    for (const h of connectionHandlers) h();
  };
  const reconnected = () => {
    // subscriptions are re-made by ioredis; messages sent while we were away are lost, so tell caches
    if (everReady) for (const h of reconnectHandlers) h();
    everReady = true;
  };

  const onError = (name: string) => (err: Error) => {
    if (!down) log.warn({ store: 'redis', connection: name, reason: err.message }, 'redis connection error');
    down = true;
  };
  const onReady = () => {
    if (everReady && down) log.info({ store: 'redis' }, 'redis reachable again');
    down = false;
  };

  let watchedSubscriber: Redis | undefined;
  /** a Cluster's subscriber connection, once it changed: its first 'ready' means messages may have been lost */
  const watchClusterSubscriber = () => {
    const current = subscriberCluster && clusterSubscriberOf(subscriberCluster);
    if (!current || current === watchedSubscriber) return;
    watchedSubscriber = current;
    if (current.status === 'ready') reconnected();
    else current.once('ready', reconnected);
  };

  if (cluster && subscriberCluster) {
    cluster.on('error', onError('cluster'));
    cluster.on('node error', onError('cluster node'));
    subscriberCluster.on('error', onError('cluster subscriber'));
    subscriberCluster.on('node error', () => {});
    cluster.on('ready', onReady);
    // every node connection answers claims: each one's closing and readiness is a change
    cluster.on('+node', (node: Redis) => {
      node.on('ready', changed);
      node.on('close', changed);
      changed();
    });
    cluster.on('-node', changed);
    for (const event of ['ready', '+node', '-node']) subscriberCluster.on(event, watchClusterSubscriber);
    subscriberCluster.on('message', deliver);
  } else {
    const conn = commands as Redis;
    const sub = subscriber as Redis;
    conn.on('error', onError('commands'));
    sub.on('error', onError('subscriber'));
    conn.on('ready', onReady);
    // ioredis emits both on process.nextTick after the status change (see replay-generations.ts)
    conn.on('ready', changed);
    conn.on('close', changed);
    sub.on('ready', reconnected);
    sub.on('message', deliver);
  }

  const ready = (): boolean => {
    if (!cluster) return commands.status === 'ready' && subscriber.status === 'ready';
    watchClusterSubscriber();
    // the subscriber connection is made with the first subscription
    return cluster.status === 'ready' && (handlers.size === 0 || watchedSubscriber?.status === 'ready');
  };

  return {
    kind: 'redis',
    connectionEpoch: () => epoch,
    onConnectionChange(handler) {
      connectionHandlers.push(handler);
    },
    async claim(shard, expected, ids, ttlSeconds) {
      const ttl = Math.max(1, Math.ceil(ttlSeconds));
      const keys = [markerKeys[shard]!, ...ids.map((id) => claimKey(shard, id))];
      const r = await wrap(() => scripts.sigilClaim(keys.length, ...keys, expected, ttl));
      if (r[0] === -1) return { claimed: undefined, found: (r[1] as string) || undefined, runId: String(r[2]) };
      return { claimed: r[0] as number };
    },
    async readMarker(shard) {
      const [found, runId] = await wrap(() => scripts.sigilReadMarker(markerKeys[shard]!)) as [string, string];
      return { found: found || undefined, runId };
    },
    async startGeneration(shard, replacing, markerPrefix) {
      const [found, runId] = await wrap(() => scripts.sigilStartGeneration(markerKeys[shard]!, replacing ?? '', markerPrefix)) as [string, string];
      return { found, runId };
    },
    async expire(shard, id, ttlSeconds) {
      await wrap(() => commands.expire(claimKey(shard, id), Math.max(1, Math.ceil(ttlSeconds))));
    },
    async evictionPolicies() {
      const nodes = cluster ? cluster.nodes('master') : [commands as Redis];
      const infos = await wrap(() => Promise.all(nodes.map((n) => n.info('memory'))));
      return infos.filter((i) => !/^maxmemory:0\r?$/m.test(i)).map((i) => /^maxmemory_policy:(\S+)/m.exec(i)?.[1] ?? 'unknown');
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
      watchClusterSubscriber();
    },
    onReconnect(handler) {
      reconnectHandlers.push(handler);
    },
    isReady: ready,
    async whenReady(timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (!ready()) {
        if (Date.now() > until) return false;
        await new Promise((r) => setTimeout(r, 20));
      }
      return true;
    },
    async ping() {
      watchClusterSubscriber();
      await wrap(() => commands.ping());
    },
    async close() {
      commands.disconnect();
      if (subscriber !== commands) subscriber.disconnect();
    },
  };
}

/** In-process stand-in for the bus: correct for exactly one instance. */
export function createMemoryStore(log?: Logger): FastStore {
  const bus = new EventEmitter();
  bus.setMaxListeners(0);
  return {
    kind: 'memory',
    async publish(channel, message) {
      // asynchronous like Redis, so callers never depend on synchronous delivery
      setImmediate(() => bus.emit(channel, message));
    },
    subscribe(channel, handler) {
      // as on Redis: a handler that throws is logged, and never stops the process or the other handlers
      bus.on(channel, (message: string) => {
        try {
          handler(message);
        } catch (err) {
          log?.error({ store: 'memory', channel, reason: (err as Error).message }, 'a pub/sub message handler failed');
        }
      });
    },
    onReconnect() {},
    isReady: () => true,
    whenReady: async () => true,
    async ping() {},
    async close() {
      bus.removeAllListeners();
    },
  };
}
