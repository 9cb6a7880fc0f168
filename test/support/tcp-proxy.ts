// A small TCP proxy for failure tests: it sits between Sigil and a real Postgres or Redis and can
// cut the link on demand, the way a network or a store fails in production. Nothing is mocked: the
// bytes that pass through are the real protocol, unchanged.
import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * How the link fails:
 *  - `refuse`:    every open connection is reset; new ones are accepted and reset at once (a store that is down);
 *  - `hold`:      every open connection is reset; new ones are accepted and never answered (a store that hangs);
 *  - `blackhole`: open connections stay open but nothing passes either way, new ones are held (a network partition).
 */
export type CutMode = 'refuse' | 'hold' | 'blackhole';

export interface TcpProxy {
  readonly host: string;
  readonly port: number;
  /** the current failure, or undefined while bytes flow */
  readonly cutMode: CutMode | undefined;
  /** connections currently open from the proxy's clients (forwarded, held or blackholed) */
  readonly openConnections: number;
  /** how many connections were accepted since the proxy started */
  readonly acceptedConnections: number;
  cut(mode?: CutMode): void;
  /** send new connections to another server (a failover behind one address); open ones are untouched */
  retarget(target: { host: string; port: number }): void;
  /** forward again; held and blackholed connections are reset so their owners reconnect */
  restore(): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
}

export async function startTcpProxy(target: { host: string; port: number }, opts: { host?: string; port?: number } = {}): Promise<TcpProxy> {
  const host = opts.host ?? '127.0.0.1';
  const pairs = new Set<Pair>();
  /** connections accepted while cut, or blackholed pairs' client sides: never forwarded */
  const stalled = new Set<Socket>();
  let mode: CutMode | undefined;
  let accepted = 0;
  let current = target;

  const reset = (s: Socket) => {
    if (!s.destroyed) s.resetAndDestroy();
  };

  const stall = (s: Socket) => {
    stalled.add(s);
    s.once('close', () => stalled.delete(s));
    // leave whatever arrives in the kernel buffers: the peer sees a silent, open connection
    s.pause();
  };

  const server: Server = createServer((client) => {
    accepted++;
    client.on('error', () => {});
    if (mode === 'refuse') return reset(client);
    if (mode === 'hold' || mode === 'blackhole') return stall(client);

    const upstream = connect(current.port, current.host);
    upstream.on('error', () => {});
    const pair: Pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      if (!pairs.delete(pair)) return;
      reset(client);
      reset(upstream);
    };
    client.once('close', drop);
    upstream.once('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.on('error', () => {});

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as { port: number };

  return {
    host,
    port,
    get cutMode() {
      return mode;
    },
    get openConnections() {
      return pairs.size + stalled.size;
    },
    get acceptedConnections() {
      return accepted;
    },
    cut(m: CutMode = 'refuse') {
      mode = m;
      for (const pair of [...pairs]) {
        if (m === 'blackhole') {
          // keep both sockets open, pass nothing: neither side learns the link is gone
          pairs.delete(pair);
          pair.client.unpipe(pair.upstream);
          pair.upstream.unpipe(pair.client);
          stall(pair.client);
          stall(pair.upstream);
        } else {
          pairs.delete(pair);
          reset(pair.client);
          reset(pair.upstream);
        }
      }
    },
    retarget(next) {
      current = next;
    },
    restore() {
      mode = undefined;
      for (const s of [...stalled]) reset(s);
      stalled.clear();
    },
    async close() {
      mode = 'refuse';
      for (const pair of [...pairs]) {
        reset(pair.client);
        reset(pair.upstream);
      }
      pairs.clear();
      for (const s of [...stalled]) reset(s);
      stalled.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
