// A Sigil instance reached at its own address while its ISSUER is the public URL of a balancer: the CLI
// sends requests to SIGIL_URL but addresses every proof and audience to the ISSUER-based URL.
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateClientKey } from '../../src/client/oauth-client.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { clientKeyFile, jsonOf, sigil, tempDir, type CliOptions } from './harness.js';

describe('sigil CLI: an instance behind a shared ISSUER', () => {
  const issuer = 'http://sigil.example.test';
  let storage: TestStorage;
  let server: ServerProcess;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let opts: CliOptions;

  before(async () => {
    storage = await createTestStorage('cli_issuer');
    server = await startServer({ issuer, env: storageEnv(storage) });
    work = await tempDir('issuer');
    opts = { url: server.url, cwd: work.dir, keysDir: path.join(work.dir, 'admin-keys') };
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
    await work?.remove();
  });

  it('init on a server without an admin registers a key already in SIGIL_KEYS_DIR', async () => {
    // e.g. the database was recreated: the key on disk becomes the admin key again
    const { privateJwk } = await generateClientKey('ES256');
    const keyFile = path.join(opts.keysDir!, 'admin.private.jwk.json');
    await mkdir(opts.keysDir!, { mode: 0o700 });
    await writeFile(keyFile, JSON.stringify(privateJwk));
    await chmod(keyFile, 0o600);
    const before = await readFile(keyFile, 'utf8');

    const run = await sigil(['init'], opts);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /with the existing key/);
    assert.equal(await readFile(keyFile, 'utf8'), before, 'the key file is kept as it was');

    const admin = jsonOf(await sigil(['init', '--json'], opts));
    assert.equal(admin.jwks.keys[0].x, privateJwk.x);
    assert.deepEqual(admin.audiences, [`${issuer}/admin`], 'the admin audience is ISSUER-based');
  });

  it('admin calls work through the instance\'s own URL', async () => {
    await clientKeyFile(path.join(work.dir, 'svc.jwks.json'));
    const created = jsonOf(await sigil(['clients', 'create', '--json', '--name', 'svc', '--jwks-file', 'svc.jwks.json', '--audience', 'https://api.example.com/x'], opts));
    const listed = jsonOf(await sigil(['clients', 'list', '--json'], opts));
    assert.ok(listed.some((c: any) => c.client_id === created.client_id));
    assert.equal(jsonOf(await sigil(['clients', 'show', created.client_id, '--json'], opts)).name, 'svc');
  });
});
