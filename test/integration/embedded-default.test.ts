// The embedded default, whole: a server with no DATABASE_URL and no REDIS_URL (PGlite in DATA_DIR,
// the in-process stand-in for Redis), as `npm start` runs on a fresh machine, and the README's
// quickstart against it: `sigil init`, the example client's keygen, `sigil clients create`, and a
// DPoP-bound token. Then a restart: what was created lives in DATA_DIR, not in the process.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { jsonOf, sigil, tempDir } from '../cli/harness.js';
import { ROOT, startServer, type ServerProcess } from '../support/server.js';

const EXAMPLE_CLIENT = path.join(ROOT, 'dist/scripts/example-client.js');
const AUDIENCE = 'https://api.example.com/orders';

/** `node dist/scripts/example-client.js ...args`, as the README runs it; its stdout as JSON. */
async function exampleClient(args: string[], cwd: string): Promise<any> {
  const { stdout } = await promisify(execFile)(process.execPath, [EXAMPLE_CLIENT, ...args], {
    cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
  });
  return JSON.parse(stdout);
}

describe('the embedded default (no DATABASE_URL, no REDIS_URL): the quickstart end to end', () => {
  let home: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess | undefined;
  let keysDir: string;
  let dataDir: string;
  let clientId: string;

  before(async () => {
    home = await tempDir('embedded');
    keysDir = path.join(home.dir, 'keys');
    dataDir = path.join(home.dir, 'data');
    // startServer passes on only the environment it is given: no DATABASE_URL, REDIS_URL or REDIS_PREFIX
    server = await startServer({ env: { DATA_DIR: dataDir, SIGIL_KEYS_DIR: keysDir } });
  });
  after(async () => {
    await server?.stop();
    await home?.remove();
  });

  const logged = (message: string) => server!.logs.some((line) => line.includes(`"msg":"${message}`));
  const cli = (args: string[]) => sigil(args, { url: server!.url, keysDir, cwd: home.dir });

  it('runs on PGlite in DATA_DIR and the in-process store, saying so', () => {
    assert.ok(logged('no DATABASE_URL: using embedded Postgres (PGlite)'), server!.logs.join('\n'));
    assert.ok(logged('no REDIS_URL: using an in-process stand-in'), server!.logs.join('\n'));
    assert.ok(existsSync(dataDir) && readdirSync(dataDir).length > 0, 'PGlite keeps its files in DATA_DIR');
  });

  it('sigil init, keygen, clients create, and a DPoP-bound token, as the README has them', async () => {
    const init = jsonOf(await cli(['init', '--json']));
    assert.equal(typeof init.client_id, 'string');
    await exampleClient(['keygen', '--out', 'keys/orders.private.jwk.json', '--public-out', 'keys/orders.jwks.json'], home.dir);
    const client = jsonOf(await cli([
      'clients', 'create', '--name', 'orders', '--jwks-file', 'keys/orders.jwks.json',
      '--scope', 'orders:read orders:write', '--audience', AUDIENCE, '--json',
    ]));
    clientId = client.client_id;
    assert.equal(client.status, 'active');

    // the example client verifies the token against jwks_uri and checks cnf.jkt is its DPoP key
    const out = await exampleClient(['--client-id', clientId, '--key-file', 'keys/orders.private.jwk.json', '--scope', 'orders:read', '--url', server!.url], home.dir);
    assert.equal(out.token_type, 'DPoP');
    assert.equal(out.expires_in, 300);
    assert.equal(out.claims.client_id, clientId);
    assert.equal(out.claims.aud, AUDIENCE);
    assert.equal(out.claims.scope, 'orders:read');
    assert.equal(typeof out.claims.cnf?.jkt, 'string');
    assert.equal(typeof out.claims.status?.status_list?.idx, 'number');
  });

  it('after a restart the admin client, the service and its keys are still there', async () => {
    assert.ok(clientId, 'the quickstart test ran first');
    await server!.restart();
    assert.deepEqual(jsonOf(await cli(['clients', 'show', clientId, '--json'])).name, 'orders');
    const out = await exampleClient(['--client-id', clientId, '--key-file', 'keys/orders.private.jwk.json', '--url', server!.url], home.dir);
    assert.equal(out.token_type, 'DPoP');
  });
});
