// The CLI's own refusals: bad command lines, unusable input files and an unreachable server. None of
// these needs a running server; SIGIL_URL points at a port nobody listens on, so a command that wrongly
// sent a request would end with "cannot reach Sigil" (exit 1) instead of its local refusal (exit 2).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateClientKey } from '../../src/client/oauth-client.js';
import { freePort } from '../support/server.js';
import { assertFailure, clientKeyFile, sigil, tempDir, type CliOptions } from './harness.js';

describe('sigil CLI: usage errors and unreachable server', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let opts: CliOptions;
  let deadUrl: string;

  before(async () => {
    work = await tempDir('usage');
    deadUrl = `http://127.0.0.1:${await freePort()}`;
    opts = { url: deadUrl, cwd: work.dir, keysDir: path.join(work.dir, 'keys') };
    await clientKeyFile(path.join(work.dir, 'public.jwks.json'));
    // some admin key, so that commands get as far as the network
    await mkdir(opts.keysDir!, { mode: 0o700 });
    await writeFile(path.join(opts.keysDir!, 'admin.private.jwk.json'), JSON.stringify((await generateClientKey('ES256')).privateJwk), { mode: 0o600 });
  });
  after(async () => {
    await work?.remove();
  });

  it('prints help for sigil and for every command, exit 0', async () => {
    const top = await sigil(['--help'], opts);
    assert.equal(top.code, 0);
    for (const command of ['init', 'clients create', 'clients list', 'clients show ID', 'clients revoke ID', 'clients keys set ID', 'tokens revoke JTI']) {
      assert.ok(top.stdout.includes(command), command);
    }
    for (const words of [['init'], ['clients', 'create'], ['clients', 'list'], ['clients', 'show'], ['clients', 'revoke'], ['clients', 'keys', 'set'], ['tokens', 'revoke']]) {
      const run = await sigil([...words, '--help'], opts);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`^Usage: sigil ${words.join(' ')}`));
    }
    const create = await sigil(['clients', 'create', '--help'], opts);
    for (const option of ['--name', '--jwks-file', '--jwks-uri', '--scope', '--audience', '--serves', '--grant-types', '--dpop', '--can-introspect', '--json']) {
      assert.ok(create.stdout.includes(option), option);
    }
  });

  it('--help --json is still exactly one JSON document', async () => {
    const run = await sigil(['clients', 'list', '--help', '--json'], opts);
    assert.equal(run.code, 0);
    assert.equal(JSON.parse(run.stdout).usage, 'sigil clients list [--json]');
  });

  it('refuses unknown flags, unknown commands and missing arguments with exit 2', async () => {
    assertFailure(await sigil(['clients', 'list', '--bogus'], opts), 2, /unknown option --bogus/);
    assertFailure(await sigil(['init', '--force'], opts), 2, /unknown option --force/);
    assertFailure(await sigil(['clients', 'frobnicate'], opts), 2, /unknown command: sigil clients frobnicate/);
    assertFailure(await sigil(['frobnicate'], opts), 2, /unknown command: sigil frobnicate/);
    assertFailure(await sigil(['clients', 'show'], opts), 2, /missing ID/);
    assertFailure(await sigil(['clients', 'show', 'a', 'b'], opts), 2, /unexpected argument "b"/);
    assertFailure(await sigil(['clients', 'list', 'extra'], opts), 2, /unexpected argument "extra"/);
    const bare = await sigil([], opts);
    assert.equal(bare.code, 2);
    assert.match(bare.stderr, /Usage: sigil <command>/);
  });

  it('checks clients create flags before sending anything', async () => {
    const jwks = 'public.jwks.json';
    assertFailure(await sigil(['clients', 'create', '--jwks-file', jwks], opts), 2, /--name is required/);
    assertFailure(await sigil(['clients', 'create', '--name', '--jwks-file', jwks], opts), 2, /--name needs a value/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x'], opts), 2, /give exactly one credential: --jwks-file, --jwks-uri, --spiffe-id/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--jwks-file', jwks, '--jwks-uri', 'https://example.com/jwks'], opts), 2, /give exactly one credential: --jwks-file, --jwks-uri, --spiffe-id/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--jwks-uri', 'not a url'], opts), 2, /--jwks-uri must be an absolute URL/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--jwks-file', jwks, '--dpop', 'sometimes'], opts), 2, /--dpop must be "required" or "optional"/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--jwks-file', jwks, '--grant-types', 'client_credentials,password'], opts), 2, /--grant-types: unknown "password"/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--jwks-file', jwks, '--can-introspect=yes'], opts), 2, /does not take an argument/);
  });

  it('refuses a missing, malformed or non-JWKS file, and one with private members (exit 2)', async () => {
    const create = (file: string) => sigil(['clients', 'create', '--name', 'x', '--jwks-file', file], opts);
    assertFailure(await create('missing.json'), 2, /--jwks-file missing\.json: cannot read it \(no such file\)/);

    await writeFile(path.join(work.dir, 'broken.json'), '{"keys": [');
    assertFailure(await create('broken.json'), 2, /broken\.json is not valid JSON/);

    await writeFile(path.join(work.dir, 'not-jwks.json'), '{"hello": "world"}');
    assertFailure(await create('not-jwks.json'), 2, /not an acceptable public JWKS: the JWKS must have a non-empty "keys" array/);

    const { privateJwk } = await generateClientKey('ES256');
    await writeFile(path.join(work.dir, 'private-set.json'), JSON.stringify({ keys: [privateJwk] }));
    const privateSet = await create('private-set.json');
    assertFailure(privateSet, 2, /contains private or secret members \(d\)/);
    assert.ok(!privateSet.stderr.includes(privateJwk.d!), 'the private key is never echoed');

    // the admin's own key file is a single private JWK: the likeliest mix-up, named as such
    await writeFile(path.join(work.dir, 'private-key.json'), JSON.stringify(privateJwk));
    assertFailure(await create('private-key.json'), 2, /holds a single JWK, not a JWKS.*private or secret members \(d\)/);
  });

  it('checks clients revoke, clients keys set and tokens revoke before sending anything', async () => {
    assertFailure(await sigil(['clients', 'revoke'], opts), 2, /missing ID/);
    assertFailure(await sigil(['clients', 'revoke', ''], opts), 2, /give the client_id to revoke/);
    assertFailure(await sigil(['clients', 'revoke', 'a', 'b'], opts), 2, /unexpected argument "b"/);
    assertFailure(await sigil(['clients', 'revoke', 'abc', '--reason'], opts), 2, /--reason needs a value/);
    assertFailure(await sigil(['clients', 'revoke', 'abc', '--reason', '  '], opts), 2, /--reason needs some text/);
    assertFailure(await sigil(['clients', 'revoke', 'abc', '--reason', 'x'.repeat(501)], opts), 2, /--reason is 501 characters long; at most 500/);
    assertFailure(await sigil(['clients', 'revoke', 'abc', '--force'], opts), 2, /unknown option --force/);

    assertFailure(await sigil(['clients', 'keys', 'set'], opts), 2, /missing ID/);
    assertFailure(await sigil(['clients', 'keys', 'set', 'abc'], opts), 2, /--jwks-file is required/);
    assertFailure(await sigil(['clients', 'keys', 'set', 'abc', '--jwks-file', 'missing.json'], opts), 2, /--jwks-file missing\.json: cannot read it \(no such file\)/);
    assertFailure(await sigil(['clients', 'keys', 'set', 'abc', '--jwks-uri', 'https://example.com/jwks'], opts), 2, /unknown option --jwks-uri/);
    assertFailure(await sigil(['clients', 'keys', 'frobnicate'], opts), 2, /unknown command: sigil clients keys frobnicate/);
    const { privateJwk } = await generateClientKey('ES256');
    await writeFile(path.join(work.dir, 'keys-private.json'), JSON.stringify({ keys: [privateJwk] }));
    const leaky = await sigil(['clients', 'keys', 'set', 'abc', '--jwks-file', 'keys-private.json'], opts);
    assertFailure(leaky, 2, /contains private or secret members \(d\)/);
    assert.ok(!leaky.stderr.includes(privateJwk.d!), 'the private key is never echoed');
    await writeFile(path.join(work.dir, 'keys-single.json'), JSON.stringify(privateJwk));
    assertFailure(await sigil(['clients', 'keys', 'set', 'abc', '--jwks-file', 'keys-single.json'], opts), 2, /holds a single JWK, not a JWKS/);

    assertFailure(await sigil(['tokens', 'revoke'], opts), 2, /missing JTI/);
    assertFailure(await sigil(['tokens', 'revoke', ''], opts), 2, /give the jti of the token to revoke/);
    assertFailure(await sigil(['tokens', 'revoke', 'x'.repeat(201)], opts), 2, /JTI is 201 characters long/);
    assertFailure(await sigil(['tokens', 'revoke', 'abc', '--reason', ''], opts), 2, /--reason needs some text/);
    // a whole access token pasted instead of its jti: named, with the jti to use
    const jwt = `${Buffer.from('{"alg":"ES256","typ":"at+jwt"}').toString('base64url')}.${Buffer.from('{"jti":"the-jti-1","client_id":"c"}').toString('base64url')}.c2ln`;
    assertFailure(await sigil(['tokens', 'revoke', jwt], opts), 2, /JTI is a whole token \(a JWT\), not its jti; its jti claim is "the-jti-1"/);
    assertFailure(await sigil(['tokens', 'frobnicate'], opts), 2, /unknown command: sigil tokens frobnicate/);
  });

  it('says where the admin key was expected when there is none', async () => {
    assertFailure(await sigil(['clients', 'list'], { ...opts, keysDir: path.join(work.dir, 'nowhere') }), 1, /no admin key at .*nowhere.*run `sigil init` first/);
  });

  it('reports an unreachable server with exit 1 and leaves no key behind', async () => {
    const unreachable = new RegExp(`cannot reach Sigil at ${deadUrl.replace(/[.]/g, '\\.')} \\(ECONNREFUSED\\)`);
    assertFailure(await sigil(['clients', 'list', '--json'], opts), 1, unreachable);
    assertFailure(await sigil(['clients', 'show', 'abc'], opts), 1, unreachable);
    assertFailure(await sigil(['clients', 'revoke', 'abc', '--reason', 'r'], opts), 1, unreachable);
    assertFailure(await sigil(['clients', 'keys', 'set', 'abc', '--jwks-file', 'public.jwks.json'], opts), 1, unreachable);
    assertFailure(await sigil(['tokens', 'revoke', 'some-jti', '--json'], opts), 1, unreachable);
    const keysDir = path.join(work.dir, 'fresh-keys');
    const init = await sigil(['init', '--json'], { ...opts, keysDir });
    assertFailure(init, 1, unreachable);
    assert.equal(existsSync(keysDir), false, 'no key written for a server that never saw it');
  });

  it('refuses a SIGIL_URL that is not an http(s) URL (exit 2)', async () => {
    assertFailure(await sigil(['clients', 'list'], { ...opts, url: 'localhost:3000' }), 2, /SIGIL_URL must be an http\(s\) URL/);
  });

  it('refuses plain http to a host that is not loopback before anything is sent (exit 2), unless SIGIL_INSECURE_HTTP=true', async () => {
    // RFC 5737 / RFC 6761 names and addresses: nothing answers there, so a request that left would fail differently
    for (const url of ['http://192.0.2.10:3000', 'http://[2001:db8::1]:3000', 'http://localhost.example.com:3000', 'http://128.0.0.1:3000']) {
      assertFailure(await sigil(['clients', 'list'], { ...opts, url }), 2, /SIGIL_URL http:\/\/.* is plain http to a host that is not loopback: .* Use https, or set SIGIL_INSECURE_HTTP=true/);
    }
    // checked before the admin key is looked for or written
    for (const args of [['init'], ['tokens', 'revoke', 'some-jti']]) {
      const run = await sigil(args, { ...opts, url: 'http://sigil.example.com:3000', keysDir: path.join(work.dir, 'insecure-keys') });
      assertFailure(run, 2, /SIGIL_URL http:\/\/sigil\.example\.com:3000 is plain http to a host that is not loopback/);
    }
    assert.equal(existsSync(path.join(work.dir, 'insecure-keys')), false, 'init wrote no key');
    for (const value of ['1', 'TRUE']) {
      assertFailure(await sigil(['clients', 'list'], { ...opts, url: 'http://sigil.example.com:3000', env: { SIGIL_INSECURE_HTTP: value } }), 2, /SIGIL_INSECURE_HTTP must be true or false/);
    }
    assertFailure(await sigil(['clients', 'list'], { ...opts, url: 'http://sigil.example.com:3000', env: { SIGIL_INSECURE_HTTP: 'false' } }), 2, /plain http to a host that is not loopback/);
    // allowed: a warning on stderr, and the request really goes out (.invalid never resolves)
    const allowed = await sigil(['clients', 'list', '--json'], { ...opts, url: 'http://sigil.invalid:3000', env: { SIGIL_INSECURE_HTTP: 'true' } });
    assertFailure(allowed, 1, /cannot reach Sigil at http:\/\/sigil\.invalid:3000 \((ENOTFOUND|EAI_AGAIN)\)/);
    assert.match(allowed.stderr, /^sigil: warning: SIGIL_INSECURE_HTTP=true: sending admin requests over plain http to http:\/\/sigil\.invalid:3000; anyone on the path can read and change them$/m);
    // https anywhere, and plain http to loopback, need no switch
    assertFailure(await sigil(['clients', 'list'], { ...opts, url: 'https://sigil.invalid' }), 1, /cannot reach Sigil at https:\/\/sigil\.invalid/);
    for (const url of [`http://localhost:${new URL(deadUrl).port}`, `http://127.1.2.3:${new URL(deadUrl).port}`, `http://[::1]:${new URL(deadUrl).port}`]) {
      const run = await sigil(['clients', 'list'], { ...opts, url });
      assertFailure(run, 1, /cannot reach Sigil at http:\/\/(localhost|127\.1\.2\.3|\[::1\]):\d+ \(ECONNREFUSED\)/);
      assert.doesNotMatch(run.stderr, /warning/);
    }
  });

  it('never prints credentials from SIGIL_URL; refuses them (exit 2)', async () => {
    const port = new URL(deadUrl).port;
    const withUserinfo = await sigil(['clients', 'list'], { ...opts, url: `http://admin:Hunter2pw@127.0.0.1:${port}` });
    assertFailure(withUserinfo, 2, /SIGIL_URL must not carry a user name or password \(http:\/\/\*\*\*@127\.0\.0\.1:\d+\/\)/);
    for (const url of [`admin:Hunter2pw@127.0.0.1:${port}`, `http://admin:Hunter2pw/x@127.0.0.1:${port}`]) {
      const run = await sigil(['clients', 'list'], { ...opts, url });
      assert.equal(run.code, 2, run.stderr);
      assert.ok(!run.stderr.includes('Hunter2pw'), run.stderr);
    }
  });

  it('refuses an admin key file that its group or others can access (exit 1), before anything is sent', async () => {
    const keysDir = path.join(work.dir, 'exposed-keys');
    await mkdir(keysDir, { mode: 0o700 });
    const file = path.join(keysDir, 'admin.private.jwk.json');
    await writeFile(file, JSON.stringify((await generateClientKey('ES256')).privateJwk), { mode: 0o600 });
    for (const [mode, args] of [[0o644, ['clients', 'list']], [0o640, ['init']], [0o604, ['tokens', 'revoke', 'x']], [0o660, ['clients', 'list']]] as const) {
      await chmod(file, mode);
      const run = await sigil([...args], { ...opts, keysDir });
      assertFailure(run, 1, new RegExp(`admin\\.private\\.jwk\\.json has mode 0${mode.toString(8)}: its group or other users can access the admin key, so it is not used\\. Run \`chmod 600 .*admin\\.private\\.jwk\\.json\``));
    }
    // 0600 and 0400 are fine: the command gets as far as the network
    for (const mode of [0o600, 0o400]) {
      await chmod(file, mode);
      assertFailure(await sigil(['clients', 'list'], { ...opts, keysDir }), 1, /cannot reach Sigil/);
    }
  });
});
