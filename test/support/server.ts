// Starts real Sigil server processes (node dist/src/main.js) and talks HTTP to them. Each process
// binds its own port (PORT=0) and the harness reads it from the "sigil listening" log line, so no
// port is ever freed here for a child to take later (another process could take it first).
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { untilReady } from './forge.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MAIN = path.join(ROOT, 'dist/src/main.js');

/**
 * A loopback port that nothing listens on right now. Only for programs that cannot listen on port 0
 * and report the port they took (redis-server, pgbouncer: see onAFreePort), and for an address that
 * must refuse connections.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A program could not bind the port it was given: another process took it after freePort(). */
export class PortTaken extends Error {}

/**
 * Start a program that must be told its port: on a free port, and again on another one when the
 * port was taken in the meantime (the race freePort() cannot close), a few times at most.
 */
export async function onAFreePort<T>(start: (port: number) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start(await freePort());
    } catch (err) {
      if (!(err instanceof PortTaken) || attempt >= attempts) throw err;
    }
  }
}

export interface ServerProcess {
  /** where this process listens */
  url: string;
  /** the public issuer (may be shared with other instances; it is not where the process listens) */
  issuer: string;
  port: number;
  /** the port of the separate /metrics listener (METRICS_PORT=0), if there is one */
  metricsPort: number | undefined;
  child: ChildProcess;
  /** every line the process wrote, stdout and stderr */
  logs: string[];
  stop(): Promise<void>;
  /** SIGKILL-free restart with the same environment, on the same port */
  restart(): Promise<void>;
}

export interface StartOptions {
  env?: Record<string, string | undefined>;
  /** ISSUER; unset: an issuer of this process's own (not its address, which is known only once bound) */
  issuer?: string;
  /**
   * The issuer is the server's own address, so that what fetches the issuer's metadata, keys and
   * status lists by their URLs (sigil/verifier, verify-server) reaches it: the port is chosen before
   * the start, and another one is tried when it was taken in the meantime.
   */
  reachableIssuer?: boolean;
}

let started = 0;

/** The JSON log line (pino) with this message, parsed, or undefined. */
function logged(line: string, msg: string): Record<string, unknown> | undefined {
  if (!line.includes(msg)) return undefined;
  try {
    const parsed = JSON.parse(line) as Record<string, unknown>;
    return parsed.msg === msg ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export async function startServer(opts: StartOptions = {}): Promise<ServerProcess> {
  const issuer = opts.issuer ?? `http://sigil-${process.pid}-${++started}.test`;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    PORT: '0',
    HOST: '127.0.0.1',
    ISSUER: issuer,
    LOG_LEVEL: 'debug',
  };
  // a coverage run (npm test) collects the servers' coverage too
  if (process.env.NODE_V8_COVERAGE) env.NODE_V8_COVERAGE = process.env.NODE_V8_COVERAGE;
  for (const [k, v] of Object.entries(opts.env ?? {})) if (v !== undefined) env[k] = v;

  const logs: string[] = [];
  const proc: ServerProcess = {
    url: '',
    issuer,
    port: 0,
    metricsPort: undefined,
    child: undefined as unknown as ChildProcess,
    logs,
    async stop() {
      const child = proc.child;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
    async restart() {
      await proc.stop();
      // the same port again: clients and the other instances keep this process's URL
      await launch({ ...env, PORT: String(proc.port), ...(env.METRICS_PORT === '0' && proc.metricsPort ? { METRICS_PORT: String(proc.metricsPort) } : {}) });
    },
  };

  async function launch(childEnv: Record<string, string>) {
    const child = spawn(process.execPath, [MAIN], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    proc.child = child;
    const listening = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL'); // not left running behind a failed test
        reject(new Error(`server did not start in time:\n${logs.join('\n')}`));
      }, 60_000);
      const onLine = (line: string) => {
        const metrics = logged(line, 'metrics listening');
        if (metrics) proc.metricsPort = Number(metrics.port);
        const main = logged(line, 'sigil listening');
        if (!main) return;
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve(Number(main.port));
      };
      const onExit = (code: number | null) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code}:\n${logs.join('\n')}`));
      };
      child.once('exit', onExit);
      for (const stream of [child.stdout!, child.stderr!]) {
        let partial = '';
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => {
          const lines = (partial + chunk).split('\n');
          partial = lines.pop() ?? '';
          logs.push(...lines);
          lines.forEach(onLine);
        });
      }
    });
    const port = await listening;
    if (!Number.isInteger(port) || port <= 0) throw new Error(`the "sigil listening" line carries no port:\n${logs.join('\n')}`);
    proc.port = port;
    proc.url = `http://127.0.0.1:${port}`;
  }

  if (opts.reachableIssuer) {
    await onAFreePort(async (port) => {
      Object.assign(env, { PORT: String(port), ISSUER: `http://127.0.0.1:${port}` });
      proc.issuer = env.ISSUER!;
      try {
        await launch(env);
      } catch (err) {
        if (logs.some((l) => l.includes('EADDRINUSE'))) {
          logs.length = 0;
          throw new PortTaken(`port ${port} was taken`);
        }
        throw err;
      }
    });
  } else {
    await launch(env);
  }
  return proc;
}

export interface Pair {
  a: ServerProcess;
  b: ServerProcess;
  /** the ISSUER both share */
  issuer: string;
}

/**
 * Two processes on one storage behind one ISSUER, as behind a load balancer: started together (so
 * migrations and the first signing key race, as they do in a rolling deploy) and both ready.
 */
export async function startPair(env: Record<string, string | undefined>, envB: Record<string, string | undefined> = env): Promise<Pair> {
  const issuer = `http://sigil-${process.pid}-${++started}.test`;
  const [a, b] = await Promise.all([startServer({ issuer, env }), startServer({ issuer, env: envB })]);
  await Promise.all([untilReady(a.url), untilReady(b.url)]);
  return { a, b, issuer };
}
