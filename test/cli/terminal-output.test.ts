// Terminal escape injection (issue 10, finding 10): a partner-chosen string must not drive the operator's
// terminal. New input with control or format characters is refused by the admin API (and registration,
// test/integration/registration.test.ts); records stored before that rule, inserted here straight into
// Postgres, are printed escaped by the CLI, in human form, in JSON and on stderr.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { JWK } from 'jose';
import { generateClientKey, keyPairFromPrivateJwk } from '../../src/client/oauth-client.js';
import { NOT_PRINTABLE } from '../../src/input/printable-text.js';
import type { TestStorage } from '../support/infra.js';
import type { ServerProcess } from '../support/server.js';
import { adminWithKey, type Admin } from '../support/sigil.js';
import { assertFailure, clientKeyFile, jsonOf, sigil, tempDir, type CliOptions, type CliRun, initialisedCliWorld, type CliWorld } from './harness.js';

/** What an attacker stores: a window title change (OSC), a screen clear (CSI), 8-bit C1 CSI, a bidi override, a fake line. */
const OSC_TITLE = '\u001b]0;pwned\u0007';
const EVIL_NAME = `Partner${OSC_TITLE}\u001b[2J\u009b31m\u202edetacilpud\u202c\nstatus          revoked\u2028x`;
const EVIL_KID = `k1${OSC_TITLE}\u009d8;;https://evil.example\u009c`;
const EVIL_URI = `https://partner.example.com/jwks\u001b[8m\u2066hidden\u2069`;
const EVIL_REASON = `offboarded\u001b[1A\u001b[2Kstatus          active`;

/** Any raw non-printable code point but the layout's own newlines. */
function rawControls(text: string): string[] {
  return [...text.replace(/\n/g, '')].filter((ch) => NOT_PRINTABLE.test(ch)).map((ch) => `U+${ch.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}

function assertInert(run: CliRun, what: string): void {
  assert.deepEqual(rawControls(run.stdout), [], `${what}: raw control characters on stdout`);
  assert.deepEqual(rawControls(run.stderr), [], `${what}: raw control characters on stderr`);
}

describe('sigil CLI: stored strings cannot drive the operator\'s terminal', () => {
  let world: CliWorld;
  let storage: TestStorage;
  let server: ServerProcess;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let opts: CliOptions;
  let admin: Admin;
  const keyed = `evil-${randomBytes(4).toString('hex')}`;
  const byUri = `evil-${randomBytes(4).toString('hex')}`;

  before(async () => {
    world = await initialisedCliWorld('escapes');
    ({ storage, server, work, opts } = world);
    const privateJwk = JSON.parse(await readFile(path.join(opts.keysDir!, 'admin.private.jwk.json'), 'utf8')) as JWK;
    admin = adminWithKey(server.url, server.issuer, await keyPairFromPrivateJwk(privateJwk));
    await clientKeyFile(path.join(work.dir, 'public.jwks.json'));

    // as if stored before the server refused such strings
    const { publicJwks } = await generateClientKey('ES256');
    const jwks = { keys: [{ ...publicJwks.keys[0], kid: EVIL_KID }] };
    await storage.sql(
      `INSERT INTO clients (client_id, name, scope, audiences, serves, grant_types, jwks, status, revoked_at, revoked_by, revoked_reason)
       VALUES ($1, $2, $3, $4, $5, '{client_credentials}', $6, 'revoked', now(), $7, $8)`,
      [keyed, EVIL_NAME, `orders:read${OSC_TITLE}`, [EVIL_URI], [EVIL_URI], JSON.stringify(jwks), `admin${OSC_TITLE}`, EVIL_REASON],
    );
    await storage.sql(
      `INSERT INTO clients (client_id, name, grant_types, jwks_uri) VALUES ($1, $2, '{client_credentials}', $3)`,
      [byUri, EVIL_NAME, EVIL_URI],
    );
  });
  after(() => world?.close());

  it('clients show prints every stored string escaped, one line per field', async () => {
    const run = await sigil(['clients', 'show', keyed], opts);
    assert.equal(run.code, 0, run.stderr);
    assertInert(run, 'clients show');
    assert.ok(run.stdout.includes('\\x1b]0;pwned\\x07'), run.stdout);
    assert.ok(run.stdout.includes('\\x9b31m\\u202edetacilpud\\u202c\\x0astatus'), 'C1, bidi and the fake line are shown as escapes');
    assert.ok(run.stdout.includes('k1\\x1b]0;pwned\\x07\\x9d8;;https://evil.example\\x9c'), 'the kid');
    assert.ok(run.stdout.includes('https://partner.example.com/jwks\\x1b[8m\\u2066hidden\\u2069'), 'the audience');
    assert.ok(run.stdout.includes('offboarded\\x1b[1A\\x1b[2Kstatus'), 'the revocation reason');
    const statusLines = run.stdout.split('\n').filter((l) => /^status\b/.test(l));
    assert.deepEqual(statusLines, ['status          revoked'], 'no faked status line');

    const uri = await sigil(['clients', 'show', byUri], opts);
    assert.equal(uri.code, 0, uri.stderr);
    assertInert(uri, 'clients show (jwks_uri)');
    assert.ok(uri.stdout.includes('jwks_uri https://partner.example.com/jwks\\x1b[8m\\u2066hidden\\u2069'), uri.stdout);
  });

  it('clients list (table) escapes too', async () => {
    const run = await sigil(['clients', 'list'], opts);
    assert.equal(run.code, 0, run.stderr);
    assertInert(run, 'clients list');
    assert.ok(run.stdout.includes('Partner\\x1b]0;pwned\\x07'), run.stdout);
    assert.equal(run.stdout.split('\n').filter(Boolean).length, 4, 'a header and one line per client (admin + 2)');
  });

  it('--json escapes what JSON.stringify leaves raw (C1, bidi, U+2028) and still parses to the stored values', async () => {
    const run = await sigil(['clients', 'show', keyed, '--json'], opts);
    assertInert(run, 'clients show --json');
    const shown = jsonOf(run);
    assert.equal(shown.name, EVIL_NAME);
    assert.equal(shown.jwks.keys[0].kid, EVIL_KID);
    assert.deepEqual(shown.audiences, [EVIL_URI]);
    assert.equal(shown.revoked_reason, EVIL_REASON);
    const list = await sigil(['clients', 'list', '--json'], opts);
    assertInert(list, 'clients list --json');
    assert.equal(jsonOf(list).find((c: { client_id: string }) => c.client_id === byUri).jwks_uri, EVIL_URI);
  });

  it('error messages on stderr are escaped, newlines included', async () => {
    // the server refuses such an id before its route table (control characters in the target)
    const run = await sigil(['clients', 'show', `nope\u009b2J\u202e\nsigil: all good`], opts);
    assertFailure(run, 1, /no client with client_id|no endpoint|must not contain control characters/);
    assertInert(run, 'stderr');
    assert.equal(run.stderr.trimEnd().split('\n').length, 1, run.stderr);
    // the CLI's own usage errors echo what was typed
    const usage = await sigil(['clients', 'show', `--bogus\u009b2J\u202e\nsigil: all good`], opts);
    assertFailure(usage, 2, /unknown option --bogus\\x9b2J\\u202e\\x0asigil: all good/);
    assertInert(usage, 'stderr of a usage error');
  });

  it('the admin API refuses such strings in new input (400 invalid_client_metadata) and stores nothing', async () => {
    const before = (await storage.sql('SELECT client_id FROM clients')).length;
    const { publicJwks } = await generateClientKey('ES256');
    const base = { name: 'ok', jwks: publicJwks, audiences: ['https://api.example.com/orders'] };
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['ESC in name', { ...base, name: `a${OSC_TITLE}` }, /^name must be printable text/],
      ['C1 CSI in name', { ...base, name: 'a\u009b2J' }, /^name must be printable text/],
      ['bidi override in name', { ...base, name: 'a\u202eb' }, /^name must be printable text/],
      ['newline in name', { ...base, name: 'a\nb' }, /^name must be printable text/],
      ['U+2028 in name', { ...base, name: 'a\u2028b' }, /^name must be printable text/],
      ['DEL in name', { ...base, name: 'a\u007fb' }, /^name must be printable text/],
      ['a name over 200 characters', { ...base, name: 'é'.repeat(201) }, /^name must be at most 200 characters/],
      ['ESC in an audience', { ...base, audiences: [EVIL_URI] }, /^audiences must be an absolute URI .*printable ASCII/],
      ['a non-ASCII audience', { ...base, audiences: ['https://api.example.com/ördérs'] }, /^audiences must be an absolute URI .*printable ASCII/],
      ['ESC in serves', { ...base, serves: ['https://api.example.com/x\u001b[0m'] }, /^serves must be an absolute URI .*printable ASCII/],
      ['ESC in jwks_uri', { name: 'ok', jwks_uri: EVIL_URI }, /^jwks_uri must be an absolute URI .*printable ASCII/],
    ];
    for (const [what, body, expected] of cases) {
      const res = await admin.call('POST', '/admin/clients', body);
      assert.equal(res.status, 400, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error, 'invalid_client_metadata', what);
      assert.match(res.body.error_description, expected, what);
    }
    const token = await admin.call('POST', '/admin/registration-tokens', { audiences: [EVIL_URI] });
    assert.equal(token.status, 400, JSON.stringify(token.body));
    assert.equal((await storage.sql('SELECT client_id FROM clients')).length, before, 'nothing stored');
    // printable text in any script is fine
    const ok = await admin.call('POST', '/admin/clients', { ...base, name: 'Société Générale 日本 🙂' });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
  });

  it('a revocation reason with control characters is refused; through the CLI too', async () => {
    const { publicJwks } = await generateClientKey('ES256');
    const created = await admin.call('POST', '/admin/clients', { name: 'to revoke', jwks: publicJwks, audiences: ['https://api.example.com/orders'] });
    assert.equal(created.status, 201);
    const refused = await admin.call('POST', `/admin/clients/${created.body.client_id}/revoke`, { reason: EVIL_REASON });
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.match(refused.body.error_description, /^reason must be printable text/);
    const cli = await sigil(['clients', 'revoke', created.body.client_id, '--reason', EVIL_REASON], opts);
    assertFailure(cli, 1, /reason must be printable text/);
    assertInert(cli, 'revoke --reason');
    const [row] = await storage.sql<{ status: string }>('SELECT status FROM clients WHERE client_id = $1', [created.body.client_id]);
    assert.equal(row!.status, 'active', 'not revoked by a refused request');
    const name = await sigil(['clients', 'create', '--name', `x${OSC_TITLE}`, '--jwks-file', 'public.jwks.json', '--audience', 'https://api.example.com/orders'], opts);
    assertFailure(name, 1, /Sigil refused the request: name must be printable text.*\(400 invalid_client_metadata\)/);
    assertInert(name, 'create --name');
  });
});
