// Loading sigil/verifier pulls in none of the server: a child process imports the package by its
// subpath export (as an API would) and records every module resolved on the way.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { REDIS_URL } from '../support/infra.js';
import { ROOT } from '../support/server.js';

const run = promisify(execFile);

/** resolves `body` after importing sigil/verifier as `v`; prints every resolved module URL */
async function loaded(body: string): Promise<string[]> {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.push(r.url); return r; } });
    const v = await import('sigil/verifier');
    ${body}
    process.stdout.write(JSON.stringify(seen));`;
  // cwd is the package: the import resolves through package.json "exports", by self-reference
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, timeout: 60_000 });
  return [...new Set(JSON.parse(stdout) as string[])];
}

const SERVER_PACKAGES = ['pg', 'pg-pool', '@electric-sql/pglite', 'oidc-provider', 'koa', 'koa-mount', 'ioredis', 'pino', 'prom-client', 'argon2'];
const packageOf = (url: string) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];

describe('sigil/verifier module graph', () => {
  it('the subpath export exists with its types', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, { types: string; default: string }>; bin: unknown };
    const entry = pkg.exports['./verifier']!;
    assert.ok(existsSync(path.join(ROOT, entry.default)), entry.default);
    assert.ok(existsSync(path.join(ROOT, entry.types)), entry.types);
    assert.ok(pkg.bin, 'the bin is kept');
  });

  it('loads only the verifier, the OAuth client, jose and node builtins; creating a verifier loads nothing more', async () => {
    const urls = await loaded(`const verify = v.createVerifier({ issuer: 'https://sigil.example.com', audience: 'https://api.example.com' }); await verify.close();`);
    assert.ok(urls.some((u) => u.endsWith('/dist/src/verifier/index.js')), 'the entry point was seen');
    const outside = urls.filter((u) => {
      if (u.startsWith('node:')) return false;
      // the OAuth client (the introspection fallback's assertions) and the algorithm table it reads: no I/O, no server
      if (/\/dist\/src\/verifier\/[^/]+\.js$/.test(u) || u.endsWith('/dist/src/client/oauth-client.js') || u.endsWith('/dist/src/keys/algorithms.js')) return false;
      return packageOf(u) !== 'jose';
    });
    assert.deepEqual(outside, [], 'nothing but the verifier, src/client, the algorithm table and jose');
    for (const name of SERVER_PACKAGES) assert.ok(!urls.some((u) => packageOf(u) === name), `${name} is not loaded`);
  });

  it('ioredis is loaded only when a Redis replay store is created', async () => {
    const urls = await loaded(`const store = await v.createRedisReplayStore({ redis: ${JSON.stringify(REDIS_URL)}, prefix: 'module-graph-test:' }); await store.close();`);
    assert.ok(urls.some((u) => packageOf(u) === 'ioredis'), 'ioredis after createRedisReplayStore');
    for (const name of SERVER_PACKAGES.filter((n) => n !== 'ioredis')) assert.ok(!urls.some((u) => packageOf(u) === name), `${name} is not loaded`);
  });
});
