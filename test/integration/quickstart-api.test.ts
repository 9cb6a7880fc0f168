// The README quickstart goes on to the API (issue 12): on the embedded default, as `npm start` runs it,
// the example API protected by sigil/verifier (`npm run example-api`) is called by the example client
// with a fresh proof per call, answers with the claims it received, and refuses the same token once
// `sigil clients revoke` has returned (the revocation reaches it through the status-list change stream).
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { jsonOf, sigil, tempDir } from '../cli/harness.js';
import { freePort, ROOT, startServer, type ServerProcess } from '../support/server.js';
import { eventually } from '../support/wait.js';

const EXAMPLE_CLIENT = path.join(ROOT, 'dist/scripts/example-client.js');
const EXAMPLE_API = path.join(ROOT, 'dist/scripts/example-api.js');
const AUDIENCE = 'https://api.example.com/orders';

interface CallOutput {
  status: number;
  www_authenticate?: string;
  body: any;
}

/** `node dist/scripts/example-client.js ...args` as the README runs it: its JSON output, whatever the exit code. */
async function exampleClient(args: string[], cwd: string): Promise<{ code: number; out: any }> {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [EXAMPLE_CLIENT, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' } });
    return { code: 0, out: JSON.parse(stdout) };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number' || !e.stdout) throw err;
    return { code: e.code, out: JSON.parse(e.stdout) };
  }
}

describe('the quickstart goes on to an API protected by sigil/verifier', () => {
  let home: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess | undefined;
  let api: ChildProcess | undefined;
  const apiLines: string[] = [];
  let keysDir: string;

  before(async () => {
    home = await tempDir('quickstart-api');
    keysDir = path.join(home.dir, 'keys');
    server = await startServer({ reachableIssuer: true, env: { DATA_DIR: path.join(home.dir, 'data'), SIGIL_KEYS_DIR: keysDir } });
  });
  after(async () => {
    api?.kill('SIGTERM');
    await server?.stop();
    await home?.remove();
  });

  const cli = (args: string[]) => sigil(args, { url: server!.url, keysDir, cwd: home.dir });

  it('example API: the claims it received; after `sigil clients revoke`, the same token is refused', async () => {
    // steps 1–3 of the quickstart
    jsonOf(await cli(['init', '--json']));
    await exampleClient(['keygen', '--out', 'keys/orders.private.jwk.json', '--public-out', 'keys/orders.jwks.json'], home.dir);
    const clientId: string = jsonOf(await cli([
      'clients', 'create', '--name', 'orders', '--jwks-file', 'keys/orders.jwks.json',
      '--scope', 'orders:read orders:write', '--audience', AUDIENCE, '--json',
    ])).client_id;

    // 5. the example API, trusting this server
    const port = await freePort();
    api = spawn(process.execPath, [EXAMPLE_API, '--issuer', server!.issuer, '--port', String(port)], { cwd: home.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    api.stdout!.on('data', (b: Buffer) => apiLines.push(...b.toString().split('\n').filter(Boolean)));
    api.stderr!.on('data', (b: Buffer) => apiLines.push(...b.toString().split('\n').filter(Boolean)));
    const listening = await eventually('the example API listens', async () => apiLines.map((l) => { try { return JSON.parse(l) as { listening?: string }; } catch { return {}; } }).find((l) => l.listening));
    assert.equal(listening.listening, `http://localhost:${port}`);

    // 6. call it: a token kept in the session file, a fresh proof per call
    const call = (url: string) => exampleClient([
      'call', url, '--client-id', clientId, '--key-file', 'keys/orders.private.jwk.json', '--scope', 'orders:read',
      '--session', 'keys/orders.session.json', '--url', server!.url,
    ], home.dir);
    const first = await call(`http://localhost:${port}/orders`);
    assert.equal(first.code, 0, JSON.stringify(first.out));
    const answer = first.out as CallOutput;
    assert.equal(answer.status, 200);
    assert.equal(answer.body.claims.client_id, clientId);
    assert.equal(answer.body.claims.aud, AUDIENCE);
    assert.equal(answer.body.claims.scope, 'orders:read');
    assert.equal(typeof answer.body.claims.cnf.jkt, 'string');
    assert.match(answer.body.message, /GET \/orders/);
    // the same token again, with a new proof (a reused proof would be refused as a replay)
    const second = await call(`http://localhost:${port}/orders/42?page=2`);
    assert.equal((second.out as CallOutput).status, 200, JSON.stringify(second.out));
    assert.equal((second.out as CallOutput).body.claims.jti, answer.body.claims.jti, 'the session kept the token');

    // 7. revoke the service; the same token is refused by the API
    const revoke = await cli(['clients', 'revoke', clientId, '--reason', 'quickstart']);
    assert.equal(revoke.code, 0, revoke.stderr);
    const refused = await eventually('the API refuses the revoked client\'s token', async () => {
      const r = await call(`http://localhost:${port}/orders`);
      return (r.out as CallOutput).status !== 200 && r;
    }, { timeout: 5000 });
    assert.equal(refused.code, 1);
    assert.equal((refused.out as CallOutput).status, 401);
    assert.equal((refused.out as CallOutput).www_authenticate, 'DPoP error="invalid_token", error_description="the access token has been revoked", algs="ES256 EdDSA PS256 RS256"');
  });
});
