// A throw-away Redis Cluster for tests: N masters (no replicas) from `redis-server --cluster-enabled
// yes` on free loopback ports, slots assigned with CLUSTER ADDSLOTSRANGE and joined with CLUSTER
// MEET (no redis-cli --cluster). No persistence: a master stopped and started again keeps its slots
// (nodes.conf stays in its directory) and comes back empty, as a crashed cache node does.
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServer } from './redis-server.js';
import { freePort } from './server.js';
import { eventually } from './wait.js';

const SLOTS = 16384;

export interface RedisCluster {
  readonly masters: RedisServer[];
  /** REDIS_URL for Sigil: every master as a seed, comma-separated */
  readonly seeds: string;
  /** the master that serves `key` */
  masterOf(key: string): Promise<RedisServer>;
  /** resolves once every master reports cluster_state:ok and knows every other master */
  untilHealthy(timeoutMs?: number): Promise<void>;
  /** one command on one master (a short-lived connection) */
  on<T = unknown>(master: RedisServer, ...command: Array<string | number>): Promise<T>;
  close(): Promise<void>;
}

async function call<T>(port: number, command: Array<string | number>): Promise<T> {
  const redis = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return (await redis.call(String(command[0]), ...command.slice(1))) as T;
  } finally {
    redis.disconnect();
  }
}

export async function startRedisCluster(opts: { masters?: number } = {}): Promise<RedisCluster> {
  const count = opts.masters ?? 3;
  // a short node timeout: a killed master is seen failed, and back, within seconds
  // the bus port is chosen too: the default (port + 10000) may not exist for a high free port
  const busPorts: number[] = [];
  const masters = await Promise.all(Array.from({ length: count }, (_, i) => startRedisServer({
    // a new bus port with each attempt: a taken one makes redis-server fail to start, and it is retried
    args: async () => {
      busPorts[i] = await freePort();
      return [
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(busPorts[i]),
        '--cluster-node-timeout', '2000', '--cluster-require-full-coverage', 'yes',
      ];
    },
  })));
  const per = Math.ceil(SLOTS / count);
  for (const [i, m] of masters.entries()) {
    await call(m.port, ['CLUSTER', 'ADDSLOTSRANGE', i * per, Math.min(SLOTS, (i + 1) * per) - 1]);
  }
  for (const [i, m] of masters.entries()) if (i > 0) await call(masters[0]!.port, ['CLUSTER', 'MEET', '127.0.0.1', m.port, busPorts[i]!]);

  const cluster: RedisCluster = {
    masters,
    seeds: masters.map((m) => `redis://127.0.0.1:${m.port}`).join(','),
    async masterOf(key) {
      const slot = await call<number>(masters[0]!.port, ['CLUSTER', 'KEYSLOT', key]);
      return masters[Math.floor(slot / per)]!;
    },
    async untilHealthy(timeoutMs = 30_000) {
      await eventually('the test cluster healthy (cluster_state:ok, every master connected)', async () => {
        const states = await Promise.all(masters.map(async (m) => {
          try {
            const info = await call<string>(m.port, ['CLUSTER', 'INFO']);
            const nodes = await call<string>(m.port, ['CLUSTER', 'NODES']);
            const healthyMasters = nodes.split('\n').filter((l) => / master /.test(` ${l.split(' ')[2]?.replace(/,/g, ' ')} `) && !/fail/.test(l.split(' ')[2] ?? '') && l.includes('connected')).length;
            return info.includes('cluster_state:ok') && healthyMasters === count;
          } catch {
            return false;
          }
        }));
        if (!states.every(Boolean)) throw new Error(`healthy per master: ${states.join(', ')}`);
        return true;
      }, { timeout: timeoutMs, every: 100 });
    },
    on: (master, ...command) => call(master.port, command),
    async close() {
      await Promise.all(masters.map((m) => m.close()));
    },
  };
  await cluster.untilHealthy();
  return cluster;
}
