// The two servers of the side-by-side run, each a child process pinned to one core: the shared
// oidc-provider baseline and Sigil on a fresh Postgres database and a private Redis key prefix.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** the project's pinned Node 22 (the system Node may be older) */
export const NODE = path.join(ROOT, 'node_modules/.bin/node');
export const BASELINE_DIR = '/work/shared/bench-baseline';
export const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/0';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface Child {
  url: string;
  issuer: string;
  child: ChildProcess;
  output: string[];
  stop(): Promise<void>;
}

async function launch(opts: { cpu?: string; nodeArgs: string[]; env: Record<string, string>; ready: string; port: number; cwd: string }): Promise<Child> {
  const url = `http://127.0.0.1:${opts.port}`;
  const argv = [NODE, ...opts.nodeArgs];
  const child = opts.cpu === undefined
    ? spawn(argv[0]!, argv.slice(1), { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('taskset', ['-c', opts.cpu, ...argv], { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  for (const s of [child.stdout!, child.stderr!]) s.on('data', (c: Buffer) => output.push(...c.toString('utf8').split('\n').filter(Boolean)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  const until = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${output.slice(-20).join('\n')}`);
    const res = await fetch(`${url}${opts.ready}`).catch(() => undefined);
    if (res?.ok) break;
    if (Date.now() > until) {
      await stop();
      throw new Error(`server not ready after 60 s:\n${output.slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, issuer: url, child, output, stop };
}

const baseEnv = () => ({ PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' });

/** A private copy of the read-only baseline, resolving koa/oidc-provider from this project. */
export async function prepareBaseline(clientJwks: object): Promise<{ dir: string; jwksFile: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sigil-bench-baseline-'));
  await copyFile(path.join(BASELINE_DIR, 'server.mjs'), path.join(dir, 'server.mjs'));
  await symlink(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  const jwksFile = path.join(dir, 'client.jwks.json');
  await writeFile(jwksFile, JSON.stringify(clientJwks));
  return { dir, jwksFile };
}

export async function startBaseline(b: { dir: string; jwksFile: string }, cpu: string | undefined, opts: { cpuProfDir?: string } = {}): Promise<Child> {
  const port = await freePort();
  return launch({
    cpu, port, cwd: b.dir, ready: '/.well-known/openid-configuration',
    nodeArgs: [...(opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`] : []), 'server.mjs'],
    env: { ...baseEnv(), PORT: String(port), HOST: '127.0.0.1', CLIENT_JWKS: b.jwksFile },
  });
}

export interface SigilStorage {
  databaseUrl: string;
  redisPrefix: string;
  /** DATA_DIR and SIGIL_KEYS_DIR: nothing of the run lands in the project's ./data or ./keys */
  dataDir: string;
  /** SIGIL_KEK, the same for every start in a run so the stored signing keys stay readable */
  kek: string;
  drop(): Promise<void>;
}

export async function createSigilStorage(): Promise<SigilStorage> {
  const name = `sigil_bench_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  const redisPrefix = `${name}:`;
  return {
    databaseUrl: u.toString(),
    redisPrefix,
    dataDir: await mkdtemp(path.join(tmpdir(), 'sigil-bench-data-')),
    kek: randomBytes(32).toString('hex'),
    async drop() {
      const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${redisPrefix}*`, 'COUNT', 1000);
        if (keys.length) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
      redis.disconnect();
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export async function startSigil(storage: SigilStorage, cpu: string | undefined, opts: { port?: number; cpuProfDir?: string } = {}): Promise<Child> {
  const port = opts.port ?? (await freePort());
  const issuer = `http://127.0.0.1:${port}`;
  return launch({
    cpu, port, cwd: ROOT, ready: '/ready',
    nodeArgs: [...(opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`] : []), path.join(ROOT, 'dist/src/main.js')],
    env: {
      ...baseEnv(), PORT: String(port), HOST: '127.0.0.1', ISSUER: issuer,
      DATABASE_URL: storage.databaseUrl, REDIS_URL, REDIS_PREFIX: storage.redisPrefix,
      DATA_DIR: storage.dataDir, SIGIL_KEYS_DIR: storage.dataDir, SIGIL_KEK: storage.kek, LOG_LEVEL: 'warn',
    },
  });
}
