// A throw-away PgBouncer in transaction pooling mode for tests: its own ini in a temp directory, its
// own loopback port, started and stopped by PID (never a system service). A small pool makes
// every client share a couple of server connections, the way a transaction pooler really behaves.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { onAFreePort, PortTaken } from './server.js';

/** PGBOUNCER_BIN, else Debian's /usr/sbin/pgbouncer (not on a non-root PATH), else the PATH */
export const PGBOUNCER_BIN = process.env.PGBOUNCER_BIN ?? (existsSync('/usr/sbin/pgbouncer') ? '/usr/sbin/pgbouncer' : 'pgbouncer');
/** pgbouncer refuses to run as root: as root it is told to switch to this user (-u) */
const UNPRIVILEGED_USER = 'nobody';

export interface PgBouncerOptions {
  /** where Postgres (or a proxy in front of it) listens */
  upstream: { host: string; port: number };
  /** the user clients log in as (trusted, listed in the auth file); also the admin console user */
  user?: string;
  /** server connections per database and user: 2 by default, so clients really share them */
  poolSize?: number;
  /** further [pgbouncer] settings, e.g. { server_login_retry: 1 } */
  settings?: Record<string, string | number>;
}

export interface PgBouncer {
  readonly host: string;
  readonly port: number;
  /** every line it logged */
  readonly logs: string[];
  readonly running: boolean;
  /** the same Postgres URL (user, database) through this PgBouncer */
  via(databaseUrl: string): string;
  /** a command on the admin console (SHOW POOLS, SHOW SERVERS ...): its rows */
  admin<T = Record<string, unknown>>(command: string): Promise<T[]>;
  /** stop it (SIGTERM, then SIGKILL) and remove its directory */
  close(): Promise<void>;
}

/** A PgBouncer on a free loopback port (again on another, should it be taken before pgbouncer binds it). */
export function startPgBouncer(opts: PgBouncerOptions): Promise<PgBouncer> {
  return onAFreePort((port) => launchPgBouncer(opts, port));
}

async function launchPgBouncer(opts: PgBouncerOptions, port: number): Promise<PgBouncer> {
  const host = '127.0.0.1';
  const user = opts.user ?? 'postgres';
  const dir = await mkdtemp(path.join(tmpdir(), 'sigil-pgbouncer-'));
  const ini = path.join(dir, 'pgbouncer.ini');
  const authFile = path.join(dir, 'users.txt');
  const settings: Record<string, string | number> = {
    listen_addr: host,
    listen_port: port,
    // no Unix socket: nothing outside this directory, nothing shared with a system PgBouncer
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: authFile,
    admin_users: user,
    pool_mode: 'transaction',
    default_pool_size: opts.poolSize ?? 2,
    max_client_conn: 500,
    ...opts.settings,
  };
  await writeFile(authFile, `"${user}" ""\n`);
  await writeFile(
    ini,
    `[databases]\n* = host=${opts.upstream.host} port=${opts.upstream.port}\n\n[pgbouncer]\n` +
      Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n',
  );
  const root = process.getuid?.() === 0;
  if (root) {
    // the unprivileged user must read its configuration
    await chmod(dir, 0o755);
    await chmod(ini, 0o644);
    await chmod(authFile, 0o644);
  }

  const logs: string[] = [];
  const child: ChildProcess = spawn(PGBOUNCER_BIN, [...(root ? ['-u', UNPRIVILEGED_USER] : []), ini], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => logs.push(...chunk.split('\n').filter(Boolean)));
  }
  const alive = () => child.exitCode === null && child.signalCode === null;
  // never leave a pgbouncer behind, whatever happens to the test process
  const killOnExit = () => {
    if (alive()) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  spawnError.catch(() => {});

  const admin = async <T>(command: string): Promise<T[]> => {
    // the admin console speaks only the simple query protocol: no parameters
    const c = new pg.Client({ host, port, user, database: 'pgbouncer' });
    c.on('error', () => {});
    await c.connect();
    try {
      return (await c.query(command)).rows as T[];
    } finally {
      await c.end().catch(() => {});
    }
  };

  const bouncer: PgBouncer = {
    host,
    port,
    logs,
    get running() {
      return alive();
    },
    via(databaseUrl) {
      const u = new URL(databaseUrl);
      u.hostname = host;
      u.port = String(port);
      return u.toString();
    },
    admin,
    async close() {
      if (alive()) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        // SIGTERM: immediate shutdown (SIGINT would wait for clients' transactions)
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      process.off('exit', killOnExit);
      await rm(dir, { recursive: true, force: true });
    },
  };

  const until = Date.now() + 10_000;
  for (;;) {
    if (!alive()) {
      process.off('exit', killOnExit);
      await rm(dir, { recursive: true, force: true });
      if (logs.some((l) => /Address already in use/i.test(l))) throw new PortTaken(`pgbouncer: port ${port} is taken`);
      throw new Error(`pgbouncer (${PGBOUNCER_BIN}) exited at start (${child.exitCode ?? child.signalCode}); is it installed (apt-get install pgbouncer)?\n${logs.slice(-20).join('\n')}`);
    }
    const up = await Promise.race([admin('SHOW VERSION').then(() => true, () => false), spawnError]).catch((err: Error) => {
      throw new Error(`cannot run pgbouncer (${PGBOUNCER_BIN}): ${err.message}; install it with apt-get install pgbouncer or set PGBOUNCER_BIN`);
    });
    if (up) return bouncer;
    if (Date.now() > until) {
      await bouncer.close();
      throw new Error(`pgbouncer on port ${port} did not answer in time:\n${logs.slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}
