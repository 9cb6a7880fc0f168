// A dedicated, throw-away redis-server for tests that stop and restart Redis under running Sigil
// processes. It listens on one fixed port for its whole life, so stop() then start() looks to its
// clients exactly like a Redis restart (and, with no persistence, every key is gone afterwards).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { onAFreePort, PortTaken } from './server.js';
import { eventually } from './wait.js';

export const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? 'redis-server';

export interface RedisServer {
  readonly port: number;
  /** redis://127.0.0.1:<port>/0 */
  readonly url: string;
  /** whether the process runs now */
  readonly running: boolean;
  /** every line the process wrote, over all its runs */
  readonly logs: string[];
  /** (re)start on the same port; resolves once it answers PING */
  start(): Promise<void>;
  /** SIGTERM (a clean shutdown) or SIGKILL (a crash); resolves once the process exited */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** stop and remove its working directory */
  close(): Promise<void>;
}

/** one PING over a raw socket: true when the server answers +PONG */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    // closed without an answer (something else on the port): no timeout would fire any more
    socket.on('close', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      answer += chunk.toString('utf8');
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'));
    });
  });
}

export interface RedisServerOptions {
  /** the port; unset: a free one (again on another, should it be taken before redis-server binds it) */
  port?: number;
  /** more redis-server options, e.g. cluster mode; a function is asked again on each attempt */
  args?: string[] | (() => Promise<string[]>);
}

export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const args = async () => (typeof opts.args === 'function' ? opts.args() : opts.args ?? []);
  if (opts.port !== undefined) return launchRedisServer(opts.port, await args());
  return onAFreePort(async (port) => launchRedisServer(port, await args()));
}

async function launchRedisServer(port: number, args: string[]): Promise<RedisServer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sigil-redis-'));
  const logs: string[] = [];
  let child: ChildProcess | undefined;
  const alive = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  // never leave a redis-server behind, whatever happens to the test process
  const killOnExit = () => {
    if (alive()) child!.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    get running() {
      return alive();
    },
    logs,
    async start() {
      if (alive()) return;
      const proc = spawn(
        REDIS_SERVER_BIN,
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'notice', ...args],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child = proc;
      for (const stream of [proc.stdout!, proc.stderr!]) {
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => logs.push(...chunk.split('\n').filter(Boolean)));
      }
      const spawnError = new Promise<never>((_, reject) => proc.once('error', reject));
      spawnError.catch(() => {});
      const until = Date.now() + 10_000;
      for (;;) {
        if (proc.exitCode !== null || proc.signalCode !== null) {
          if (logs.some((l) => /Address already in use/i.test(l))) throw new PortTaken(`redis-server: port ${port} (or its cluster bus port) is taken`);
          throw new Error(`redis-server on port ${port} exited at start (${proc.exitCode ?? proc.signalCode}):\n${logs.slice(-20).join('\n')}`);
        }
        if (await Promise.race([ping(port), spawnError])) return;
        if (Date.now() > until) throw new Error(`redis-server on port ${port} did not answer PING in time:\n${logs.slice(-20).join('\n')}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop(signal = 'SIGTERM') {
      if (!alive()) return;
      const proc = child!;
      const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      // the port is free again once nothing answers on it
      await eventually(`nothing answers on port ${port} any more`, async () => !(await ping(port)), { timeout: 5000 }).catch(() => {});
    },
    async close() {
      await server.stop();
      process.off('exit', killOnExit);
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await server.start();
  } catch (err) {
    await server.close();
    throw err;
  }
  return server;
}
