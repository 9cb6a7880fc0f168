// Partner self-onboarding: RFC 7591 dynamic registration with initial access tokens from
// `sigil registration-tokens create`, and RFC 7592 management with the registration access token.
// Two real Sigil processes share one Postgres and one Redis (and one ISSUER) and behave as one server.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import {
  generateClientKey, keyPairFromPrivateJwk, requestToken, TokenError, type SigningKeyPair,
} from '../../src/client/oauth-client.js';
import { decodePayload, ed25519IdentityKey, rsaExponentOneKey } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startPair, type ServerProcess } from '../support/server.js';
import { adminWithKey, type Admin } from '../support/sigil.js';
import { jsonOf, sigil, tempDir, type CliOptions } from '../cli/harness.js';
import { send, type Answer } from '../support/http.js';
import { eventually, observedWithin } from '../support/wait.js';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** CONTRACT.md: "on every instance within one second" */
const PROPAGATION_MS = 1000;

/** POST /register with `token` as the Bearer initial access token. */
function register(baseUrl: string, token: string | undefined, metadata: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return send(`${baseUrl}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...headers },
    body: typeof metadata === 'string' ? metadata : JSON.stringify(metadata),
  });
}

/** RFC 7592 call on `baseUrl` for the registration at `clientUri` (an ISSUER-based URL). */
function manage(baseUrl: string, clientUri: string, method: 'GET' | 'PUT' | 'DELETE', token: string | undefined, body?: unknown): Promise<Answer> {
  const { pathname } = new URL(clientUri);
  return send(`${baseUrl}${pathname}`, {
    method,
    headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

function assertUnauthorized(a: Answer, description?: RegExp): void {
  assert.equal(a.status, 401, `expected 401, got ${a.status} ${a.text}`);
  assert.equal(a.body?.error, 'invalid_token', a.text);
  assert.match(a.headers.get('www-authenticate') ?? '', /^Bearer\b/, 'WWW-Authenticate: Bearer');
  assert.equal(a.body?.client_id, undefined);
  if (description) assert.match(a.body.error_description, description);
}

function assertRefused(a: Answer, description: RegExp): void {
  assert.equal(a.status, 400, `expected 400, got ${a.status} ${a.text}`);
  assert.equal(a.body?.error, 'invalid_client_metadata', a.text);
  assert.match(a.body.error_description, description);
  assert.equal(a.body.client_id, undefined);
}

interface PartnerKey {
  pair: SigningKeyPair;
  jwks: { keys: JWK[] };
}

async function partnerKey(alg: 'ES256' | 'EdDSA' | 'PS256' = 'ES256'): Promise<PartnerKey> {
  const { privateJwk, publicJwks } = await generateClientKey(alg);
  return { pair: await keyPairFromPrivateJwk(privateJwk), jwks: publicJwks };
}

type Outcome = { ok: true; token: string; body: any } | { ok: false; status: number; error: string | undefined; text: string };

async function tryToken(baseUrl: string, issuer: string, clientId: string, key: SigningKeyPair, extra: { resource?: string; dpop?: boolean } = {}): Promise<Outcome> {
  const dpopKey = extra.dpop === false ? undefined : await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
  try {
    const res = await requestToken({
      tokenEndpoint: `${baseUrl}/token`, htu: `${issuer}/token`, issuer, clientId, clientKey: key, dpopKey, resource: extra.resource,
    });
    return { ok: true, token: res.access_token, body: res };
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    return { ok: false, status: err.status, error: err.body.error, text: JSON.stringify(err.body) };
  }
}

describe('dynamic client registration (RFC 7591) and management (RFC 7592) on two instances', () => {
  let storage: TestStorage;
  let a: ServerProcess;
  let b: ServerProcess;
  let issuer: string;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let cliA: CliOptions;
  let admin: Admin;
  /** every secret this file saw; none may appear in a log line */
  const secrets: string[] = [];

  /** `sigil registration-tokens create ... --json` against instance A */
  async function createToken(...args: string[]): Promise<any> {
    const created = jsonOf(await sigil(['registration-tokens', 'create', ...args, '--json'], cliA));
    secrets.push(created.token, created.token.split('.')[1]);
    // never starting with '-': `sigil registration-tokens revoke ID` would take it for an option
    assert.match(created.id, /^[0-9a-f]{16}$/);
    return created;
  }

  before(async () => {
    storage = await createTestStorage('registration');
    const env = storageEnv(storage);
    ({ a, b, issuer } = await startPair(env));
    work = await tempDir('registration');
    cliA = { url: a.url, cwd: work.dir, keysDir: path.join(work.dir, 'keys') };
    jsonOf(await sigil(['init', '--json'], cliA));
    const privateJwk = JSON.parse(await readFile(path.join(cliA.keysDir!, 'admin.private.jwk.json'), 'utf8')) as JWK;
    admin = adminWithKey(a.url, issuer, await keyPairFromPrivateJwk(privateJwk));
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await storage?.cleanup();
    await work?.remove();
  });

  it('discovery names /register; it answers without oidc-provider (no token → 401 Bearer)', async () => {
    const md = (await send(`${b.url}/.well-known/oauth-authorization-server`, {})).body;
    assert.equal(md.registration_endpoint, `${issuer}/register`);
    assertUnauthorized(await register(b.url, undefined, { jwks: (await partnerKey()).jwks }), /initial access token/);
    const get = await send(`${a.url}/register`, {});
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
  });

  it('registration-tokens create: single-use by default; the client gets a DPoP token with the token\'s scope and audiences', async () => {
    const t0 = Date.now();
    const created = await createToken('--scope', 'orders:read orders:write', '--audience', 'https://api.example.com/orders', '--audience', 'https://api.example.com/billing');
    assert.match(created.token, /^sit_[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{43}$/, '256-bit secret');
    const expiresAt = Date.parse(created.expires_at);
    assert.ok(Math.abs(expiresAt - (t0 + 86_400_000)) < 60_000, `default expiry is one day: ${created.expires_at}`);
    assert.equal(created.uses, 1);
    assert.equal(created.uses_left, 1);
    assert.equal(created.scope, 'orders:read orders:write');
    assert.deepEqual(created.audiences, ['https://api.example.com/orders', 'https://api.example.com/billing']);

    const key = await partnerKey();
    const reg = await register(a.url, created.token, { jwks: key.jwks, token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'] });
    assert.equal(reg.status, 201, reg.text);
    secrets.push(reg.body.registration_access_token);
    const r = reg.body;
    assert.match(r.client_id, /^[0-9a-f]{32}$/);
    assert.equal(typeof r.client_id_issued_at, 'number');
    assert.ok(Math.abs(r.client_id_issued_at * 1000 - Date.now()) < 60_000);
    assert.match(r.registration_access_token, /^srat_[A-Za-z0-9_-]{43}$/);
    assert.equal(r.registration_client_uri, `${issuer}/register/${r.client_id}`);
    assert.equal(r.token_endpoint_auth_method, 'private_key_jwt');
    assert.deepEqual(r.grant_types, ['client_credentials']);
    assert.deepEqual(r.jwks, key.jwks);
    assert.equal(r.client_name, 'registered client');
    assert.equal(r.scope, 'orders:read orders:write');
    assert.deepEqual(r.audiences, ['https://api.example.com/orders', 'https://api.example.com/billing']);
    assert.equal(r.dpop_bound_access_tokens, true);
    assert.equal(reg.headers.get('cache-control'), 'no-store');

    // single-use: a second registration with the same token is refused, on either instance
    assertUnauthorized(await register(b.url, created.token, { jwks: (await partnerKey()).jwks }), /no use left/);
    assertUnauthorized(await register(a.url, created.token, { jwks: (await partnerKey()).jwks }), /no use left/);

    // the registered client gets DPoP-bound tokens (on the other instance) within the token's grant
    const got = await tryToken(b.url, issuer, r.client_id, key.pair);
    assert.ok(got.ok, JSON.stringify(got));
    assert.equal(got.body.token_type, 'DPoP');
    const claims = decodePayload(got.token);
    assert.equal(claims.client_id, r.client_id);
    assert.equal(claims.scope, 'orders:read orders:write');
    assert.equal(claims.aud, 'https://api.example.com/orders', 'the first audience is the default');
    assert.equal(typeof claims.cnf?.jkt, 'string');
    const billing = await tryToken(b.url, issuer, r.client_id, key.pair, { resource: 'https://api.example.com/billing' });
    assert.ok(billing.ok && decodePayload(billing.token).aud === 'https://api.example.com/billing', JSON.stringify(billing));
    const elsewhere = await tryToken(b.url, issuer, r.client_id, key.pair, { resource: 'https://api.example.com/payroll' });
    assert.ok(!elsewhere.ok && elsewhere.error === 'invalid_target', JSON.stringify(elsewhere));
    const bearer = await tryToken(b.url, issuer, r.client_id, key.pair, { dpop: false });
    assert.ok(!bearer.ok && bearer.error === 'invalid_dpop_proof', `DPoP is required: ${JSON.stringify(bearer)}`);

    // the admin sees an ordinary client; the audit log ties it to the initial access token
    const shown = await admin.call('GET', `/admin/clients/${r.client_id}`);
    assert.equal(shown.body.dpop, 'required');
    assert.equal(shown.body.can_introspect, false);
    assert.deepEqual(shown.body.serves, []);
    const audit = await storage.sql<{ actor: string; action: string; target: string; details: any }>(
      'SELECT actor, action, target, details FROM audit_log WHERE target IN ($1, $2) AND action <> $3 ORDER BY id', [created.id, r.client_id, 'registration_token.refused'],
    );
    assert.deepEqual(audit.map((x) => [x.actor, x.action, x.target]), [
      ['sigil-admin', 'registration_token.create', created.id],
      ['registration', 'registration_token.use', created.id],
      ['registration', 'client.register', r.client_id],
    ]);
    assert.equal(audit[1]!.details.client_id, r.client_id);
    assert.equal(audit[2]!.details.initial_access_token, created.id);
    // refusals are logged, not audited: a used-up token's secret is never checked, so its presenter
    // is unauthenticated, and a row per forged request would fill audit_log
    const refused = await storage.sql('SELECT reason FROM audit_log WHERE action = $1 AND target = $2', ['registration_token.refused', created.id]);
    assert.deepEqual(refused, []);
  });

  it('Postgres holds an argon2id hash of the initial access token and a SHA-256 of the registration access token, never the tokens', async () => {
    const created = await createToken('--uses', '2');
    const secret = created.token.split('.')[1];
    const rows = await storage.sql<Record<string, unknown>>('SELECT * FROM initial_access_tokens WHERE id = $1', [created.id]);
    assert.equal(rows.length, 1);
    assert.match(String(rows[0]!.secret_hash), /^\$argon2id\$/);
    for (const [column, value] of Object.entries(rows[0]!)) {
      assert.ok(!String(value).includes(secret), `column ${column} holds the secret`);
      assert.ok(!String(value).includes(created.token), `column ${column} holds the token`);
    }
    const reg = await register(a.url, created.token, { jwks: (await partnerKey()).jwks, client_name: 'hash check' });
    assert.equal(reg.status, 201, reg.text);
    const rat = reg.body.registration_access_token as string;
    secrets.push(rat);
    const [row] = await storage.sql<Record<string, unknown>>('SELECT * FROM client_registrations WHERE client_id = $1', [reg.body.client_id]);
    assert.equal(row!.access_token_hash, createHash('sha256').update(rat).digest('hex'));
    assert.equal(row!.initial_access_token_id, created.id);
    // no table anywhere holds either token
    const dump = JSON.stringify(await storage.sql(`SELECT
      (SELECT json_agg(t) FROM initial_access_tokens t) AS iat, (SELECT json_agg(c) FROM client_registrations c) AS reg,
      (SELECT json_agg(l) FROM audit_log l) AS audit, (SELECT json_agg(k) FROM clients k) AS clients,
      (SELECT json_agg(o) FROM oidc_models o) AS models`));
    for (const s of [secret, created.token, rat, rat.slice(5)]) assert.ok(!dump.includes(s), 'a token is stored in the clear');
  });

  it('--uses 3: exactly 3 of 10 concurrent registrations on two instances succeed', async () => {
    const created = await createToken('--uses', '3', '--scope', 'orders:read');
    const keys = await Promise.all(Array.from({ length: 10 }, () => partnerKey()));
    const answers = await Promise.all(keys.map((k, i) => register(i % 2 ? b.url : a.url, created.token, { jwks: k.jwks, client_name: `concurrent ${i}` })));
    const statuses = answers.map((x) => x.status);
    assert.equal(statuses.filter((s) => s === 201).length, 3, `statuses: ${statuses.join(',')}`);
    assert.equal(statuses.filter((s) => s === 401).length, 7, `statuses: ${statuses.join(',')}`);
    for (const x of answers.filter((y) => y.status === 401)) assertUnauthorized(x, /no use left/);
    for (const x of answers.filter((y) => y.status === 201)) secrets.push(x.body.registration_access_token);
    const [t] = await storage.sql<{ uses_left: number }>('SELECT uses_left FROM initial_access_tokens WHERE id = $1', [created.id]);
    assert.equal(t!.uses_left, 0);
    const regs = await storage.sql('SELECT client_id FROM client_registrations WHERE initial_access_token_id = $1', [created.id]);
    assert.equal(regs.length, 3);
    const uses = await storage.sql('SELECT 1 FROM audit_log WHERE action = $1 AND target = $2', ['registration_token.use', created.id]);
    assert.equal(uses.length, 3);
    const listed = jsonOf(await sigil(['registration-tokens', 'list', '--json'], cliA)).find((x: any) => x.id === created.id);
    assert.equal(listed.status, 'used_up');
    assert.equal(listed.token, undefined, 'list never shows a token');
  });

  it('an expired token is refused (401)', async () => {
    const created = await createToken('--expires-in', '1');
    assert.equal(created.uses, 1);
    await eventually('the token to expire', async () => {
      const shown = await admin.call('GET', `/admin/registration-tokens/${created.id}`);
      return shown.body?.status === 'expired';
    }, { timeout: 10_000 });
    assertUnauthorized(await register(b.url, created.token, { jwks: (await partnerKey()).jwks }), /expired/);
  });

  it('a revoked token is refused (401), and its revocation is audited', async () => {
    const created = await createToken('--uses', '5');
    const revoked = jsonOf(await sigil(['registration-tokens', 'revoke', created.id, '--json'], cliA));
    assert.equal(revoked.status, 'revoked');
    assert.equal(revoked.revoked_by, 'sigil-admin');
    assertUnauthorized(await register(a.url, created.token, { jwks: (await partnerKey()).jwks }), /revoked/);
    assertUnauthorized(await register(b.url, created.token, { jwks: (await partnerKey()).jwks }), /revoked/);
    const audit = await storage.sql('SELECT actor FROM audit_log WHERE action = $1 AND target = $2', ['registration_token.revoke', created.id]);
    assert.deepEqual(audit.map((x) => x.actor), ['sigil-admin']);
  });

  it('garbage, unknown, wrongly-signed and wrong-scheme tokens are refused (401) and use nothing', async () => {
    const created = await createToken('--uses', '1');
    const id = created.id as string;
    const jwks = (await partnerKey()).jwks;
    const wrongSecret = `sit_${id}.${randomBytes(32).toString('base64url')}`;
    const unknownId = `sit_${randomBytes(12).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
    for (const token of ['garbage', 'sit_', `${created.token}x`, created.token.slice(0, -1), wrongSecret, unknownId, 'a'.repeat(3000)]) {
      assertUnauthorized(await register(a.url, token, { jwks }), /initial access token is not valid/);
    }
    for (const authorization of [`Basic ${Buffer.from(`x:${created.token}`).toString('base64')}`, `DPoP ${created.token}`, 'Bearer', `Bearer  ${created.token}`, created.token]) {
      assertUnauthorized(await register(b.url, undefined, { jwks }, { authorization }));
    }
    const [t] = await storage.sql<{ uses_left: number }>('SELECT uses_left FROM initial_access_tokens WHERE id = $1', [id]);
    assert.equal(t!.uses_left, 1, 'no use was taken');
    const reg = await register(a.url, created.token, { jwks });
    assert.equal(reg.status, 201, reg.text);
    secrets.push(reg.body.registration_access_token);
  });

  it('refuses unacceptable metadata with invalid_client_metadata saying what to fix, and takes no use', async () => {
    const created = await createToken('--scope', 'orders:read', '--audience', 'https://api.example.com/orders');
    const jwks = (await partnerKey()).jwks;
    const { privateKey: ecPrivate } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = await exportJWK(ecPrivate);
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' }) as JWK;
    const rsa2048 = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }) as JWK;
    const cases: Array<[string, unknown, RegExp]> = [
      ['a client secret', { jwks, client_secret: 's3cret' }, /^client_secret is not accepted: Sigil issues no client secrets; use token_endpoint_auth_method "private_key_jwt"/],
      ['client_secret_basic', { jwks, token_endpoint_auth_method: 'client_secret_basic' }, /"client_secret_basic" relies on a shared client secret, which Sigil does not issue; use "private_key_jwt"/],
      ['client_secret_post', { jwks, token_endpoint_auth_method: 'client_secret_post' }, /"client_secret_post" relies on a shared client secret/],
      ['client_secret_jwt', { jwks, token_endpoint_auth_method: 'client_secret_jwt' }, /"client_secret_jwt" relies on a shared client secret/],
      ['none', { jwks, token_endpoint_auth_method: 'none' }, /"none" \(a public client\) is not supported; use "private_key_jwt"/],
      ['tls_client_auth', { jwks, token_endpoint_auth_method: 'tls_client_auth' }, /"tls_client_auth" is not supported; use "private_key_jwt"/],
      ['redirect_uris', { jwks, redirect_uris: ['https://partner.example.com/cb'] }, /redirect_uris are not accepted: .*no redirect-based flow/],
      ['response_types', { jwks, response_types: ['code'] }, /response_types are not accepted/],
      ['authorization_code', { jwks, grant_types: ['authorization_code'] }, /grant type "authorization_code" needs browser redirects, which Sigil does not support; allowed: client_credentials/],
      ['implicit', { jwks, grant_types: ['implicit'] }, /grant type "implicit" needs browser redirects/],
      ['password', { jwks, grant_types: ['client_credentials', 'password'] }, /grant type "password" is not supported; allowed: client_credentials, urn:ietf:params:oauth:grant-type:token-exchange, refresh_token/],
      ['device_code', { jwks, grant_types: ['urn:ietf:params:oauth:grant-type:device_code'] }, /grant type "urn:ietf:params:oauth:grant-type:device_code" is not supported/],
      ['empty grant_types', { jwks, grant_types: [] }, /grant_types must be a non-empty list/],
      ['a private key in jwks', { jwks: { keys: [privateJwk] } }, /^jwks: key 0 contains private or secret members \(d\); register only the public key/],
      ['a symmetric key', { jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }, /^jwks: key 0 contains private or secret members \(k\)/],
      ['RSA 1024', { jwks: { keys: [rsa1024] } }, /key 0 is a 1024-bit RSA key; at least 2048 bits are required/],
      ['RSA e = 1 (anyone can sign)', { jwks: { keys: [rsaExponentOneKey().jwk] } }, /^jwks: key 0 has the RSA exponent e = "AQ"; only 65537 \("AQAB"\) is accepted$/],
      ['an Ed25519 identity point (anyone can sign)', { jwks: { keys: [ed25519IdentityKey().jwk] } }, /^jwks: key 0 is an Ed25519 point of small order/],
      ['a kid carrying a terminal escape sequence', { jwks: { keys: [{ ...jwks.keys[0], kid: '\x1b]0;owned\x07\x1b[2J' }] } }, /^jwks: key 0 has a kid that is not 1 to 128 printable ASCII characters$/],
      ['a key with an unsupported alg', { jwks: { keys: [{ ...jwks.keys[0], alg: 'ES384' }] } }, /key 0 has alg "ES384"; allowed for EC: ES256/],
      ['HS256', { jwks, token_endpoint_auth_signing_alg: 'HS256' }, /token_endpoint_auth_signing_alg "HS256" is not supported; use one of ES256, EdDSA, PS256, RS256/],
      ['alg none', { jwks, token_endpoint_auth_signing_alg: 'none' }, /token_endpoint_auth_signing_alg "none" is not supported/],
      ['ES512', { jwks, token_endpoint_auth_signing_alg: 'ES512' }, /"ES512" is not supported/],
      ['an alg no key has', { jwks: { keys: [rsa2048] }, token_endpoint_auth_signing_alg: 'ES256' }, /token_endpoint_auth_signing_alg ES256 matches none of the keys in jwks/],
      ['both jwks and jwks_uri', { jwks, jwks_uri: 'https://partner.example.com/jwks' }, /give exactly one of jwks or jwks_uri/],
      ['no keys', { client_name: 'keyless' }, /give exactly one of jwks or jwks_uri/],
      ['an http jwks_uri', { jwks_uri: 'http://partner.example.com/jwks' }, /^jwks_uri must use https$/],
      ['a jwks_uri with credentials', { jwks_uri: 'https://u:p@partner.example.com/jwks' }, /credentials/],
      ['a jwks_uri with a fragment', { jwks_uri: 'https://partner.example.com/jwks#k' }, /fragment/],
      ['dpop off', { jwks, dpop_bound_access_tokens: false }, /dpop_bound_access_tokens must be true or absent/],
      ['a wider scope', { jwks, scope: 'orders:read orders:write' }, /scope "orders:write" is not granted by your initial access token \(it grants: orders:read\)/],
      ['another audience', { jwks, audiences: ['https://api.example.com/payroll'] }, /audiences "https:\/\/api.example.com\/payroll" is not granted/],
      ['a bad client_name', { jwks, client_name: '' }, /client_name must be a non-empty string/],
      ['an array', [jwks], /must be a JSON object of client metadata/],
      ['not JSON', '{"jwks":', /not valid JSON/],
    ];
    for (const [what, metadata, expected] of cases) {
      const res = await register(a.url, created.token, metadata);
      assert.equal(res.status, 400, `${what}: ${res.status} ${res.text}`);
      assertRefused(res, expected);
    }
    const form = await register(a.url, created.token, new URLSearchParams({ client_name: 'x' }).toString(), { 'content-type': 'application/x-www-form-urlencoded' });
    assertRefused(form, /send the client metadata as JSON/);
    const [t] = await storage.sql<{ uses_left: number }>('SELECT uses_left FROM initial_access_tokens WHERE id = $1', [created.id]);
    assert.equal(t!.uses_left, 1, 'refused metadata takes no use');
    // a narrower scope is fine, and the token still works after all those refusals
    const ok = await register(a.url, created.token, { jwks, scope: 'orders:read', client_name: 'Partner Co', grant_types: ['client_credentials', TOKEN_EXCHANGE, 'refresh_token'] });
    assert.equal(ok.status, 201, ok.text);
    secrets.push(ok.body.registration_access_token);
    assert.equal(ok.body.client_name, 'Partner Co');
    assert.deepEqual(ok.body.grant_types, ['client_credentials', TOKEN_EXCHANGE, 'refresh_token']);
  });

  it('refuses a client_name or jwks_uri that is not printable text (terminal escapes), takes no use, and accepts any script', async () => {
    const created = await createToken('--scope', 'orders:read', '--audience', 'https://api.example.com/orders');
    const jwks = (await partnerKey()).jwks;
    const names: Array<[string, string]> = [
      ['an OSC window title', 'Partner\u001b]0;pwned\u0007'],
      ['a CSI sequence', 'Partner\u001b[2J'],
      ['an 8-bit C1 CSI', 'Partner\u009b31m'],
      ['a bidi override', 'Partner\u202eoC'],
      ['a bidi isolate', 'Partner\u2067oC\u2069'],
      ['a newline (a fake line)', 'Partner\nstatus  revoked'],
      ['a carriage return', 'Partner\rCo'],
      ['a line separator', 'Partner\u2028Co'],
      ['a zero-width space', 'Part\u200bner'],
      ['DEL', 'Partner\u007f'],
    ];
    for (const [what, clientName] of names) {
      const res = await register(a.url, created.token, { jwks, client_name: clientName });
      assert.equal(res.status, 400, `${what}: ${res.text}`);
      assertRefused(res, /^client_name must be printable text/);
    }
    assertRefused(await register(a.url, created.token, { jwks, client_name: 'é'.repeat(201) }), /^client_name must be at most 200 characters/);
    for (const jwksUri of ['https://partner.example.com/jwks\u001b]0;x\u0007', 'https://partner.example.com/j\u009bwks', 'https://partner.example.com/\u202ejwks', 'https://partner.example.com/jwks ks']) {
      assertRefused(await register(a.url, created.token, { jwks_uri: jwksUri }), /^jwks_uri must be written in printable ASCII/);
    }
    const [t] = await storage.sql<{ uses_left: number }>('SELECT uses_left FROM initial_access_tokens WHERE id = $1', [created.id]);
    assert.equal(t!.uses_left, 1, 'refused metadata takes no use');
    const ok = await register(a.url, created.token, { jwks, client_name: 'Société Générale — 日本 🙂' });
    assert.equal(ok.status, 201, ok.text);
    secrets.push(ok.body.registration_access_token);
    assert.equal(ok.body.client_name, 'Société Générale — 日本 🙂');
    // RFC 7592 update: the same rule for the new jwks_uri
    assertRefused(await manage(a.url, ok.body.registration_client_uri, 'PUT', ok.body.registration_access_token, { jwks_uri: 'https://partner.example.com/jwks\u001b[8m' }), /^jwks_uri must be written in printable ASCII/);
  });

  it('RFC 7592: read, update keys (seen by the other instance within a second), delete', async () => {
    const created = await createToken('--uses', '2', '--scope', 'orders:read', '--audience', 'https://api.example.com/orders');
    const k1 = await partnerKey();
    const k2 = await partnerKey('EdDSA');
    const reg = await register(a.url, created.token, { jwks: k1.jwks, client_name: 'rotating partner' });
    assert.equal(reg.status, 201, reg.text);
    const { client_id: clientId, registration_client_uri: uri, registration_access_token: rat } = reg.body;
    secrets.push(rat);
    const other = await register(a.url, created.token, { jwks: (await partnerKey()).jwks });
    assert.equal(other.status, 201, other.text);
    secrets.push(other.body.registration_access_token);

    // B has authenticated the client with k1 (its caches are warm)
    assert.ok((await tryToken(b.url, issuer, clientId, k1.pair)).ok);

    const read = await manage(b.url, uri, 'GET', rat);
    assert.equal(read.status, 200, read.text);
    const { registration_access_token: _none, ...expected } = reg.body;
    assert.deepEqual(read.body, expected);
    assert.equal(read.body.registration_access_token, undefined, 'the token is shown only at registration');

    // the wrong token, another client's token, no token, an unknown client: 401
    assertUnauthorized(await manage(b.url, uri, 'GET', `srat_${randomBytes(32).toString('base64url')}`));
    assertUnauthorized(await manage(b.url, uri, 'GET', other.body.registration_access_token));
    assertUnauthorized(await manage(b.url, uri, 'GET', undefined));
    assertUnauthorized(await manage(b.url, `${issuer}/register/nope`, 'GET', rat));
    assertUnauthorized(await manage(a.url, uri, 'PUT', created.token, { ...read.body, jwks: k2.jwks }), /not valid for this client/);

    // only the keys may change
    assertRefused(await manage(a.url, uri, 'PUT', rat, { ...read.body, jwks: k2.jwks, scope: 'orders:read orders:write' }), /scope cannot be changed: it comes from the initial access token/);
    assertRefused(await manage(a.url, uri, 'PUT', rat, { ...read.body, jwks: k2.jwks, audiences: ['https://api.example.com/payroll'] }), /audiences cannot be changed/);
    assertRefused(await manage(a.url, uri, 'PUT', rat, { ...read.body, jwks: k2.jwks, client_name: 'renamed' }), /client_name cannot be changed here/);
    assertRefused(await manage(a.url, uri, 'PUT', rat, { ...read.body, jwks: k2.jwks, grant_types: [TOKEN_EXCHANGE] }), /grant_types cannot be changed here/);
    assertRefused(await manage(a.url, uri, 'PUT', rat, { ...read.body, jwks: k2.jwks, client_id: other.body.client_id }), /client_id does not match/);
    assertRefused(await manage(a.url, uri, 'PUT', rat, { ...read.body, jwks: k2.jwks, client_secret: 'x' }), /client_secret is not accepted/);
    assertRefused(await manage(a.url, uri, 'PUT', rat, { ...read.body, jwks: k2.jwks, jwks_uri: 'https://partner.example.com/jwks' }), /exactly one of jwks or jwks_uri/);
    const { jwks: _k, ...withoutKeys } = read.body;
    assertRefused(await manage(a.url, uri, 'PUT', rat, withoutKeys), /exactly one of jwks or jwks_uri/);
    assertRefused(await manage(a.url, uri, 'PUT', rat, { jwks: { keys: [{ ...k2.jwks.keys[0], d: 'AAAA' }] } }), /private or secret members \(d\)/);
    assertRefused(await manage(a.url, uri, 'PUT', rat, { jwks: { keys: [rsaExponentOneKey().jwk] } }), /RSA exponent e = "AQ"/);
    assertRefused(await manage(a.url, uri, 'PUT', rat, { jwks: { keys: [{ ...k2.jwks.keys[0], kid: 'k\u001b[31m' }] } }), /kid that is not 1 to 128 printable ASCII/);

    // the full document back with new keys (registration_access_token & co. are ignored)
    const put = await manage(a.url, uri, 'PUT', rat, { ...read.body, registration_access_token: rat, jwks: k2.jwks });
    const t0 = Date.now();
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(put.body.jwks, k2.jwks);
    assert.equal(put.body.scope, 'orders:read');
    await Promise.all([
      observedWithin('B refuses the old key', t0, PROPAGATION_MS, async () => {
        const r = await tryToken(b.url, issuer, clientId, k1.pair);
        return !r.ok && r.status === 401 && r.error === 'invalid_client' ? true : JSON.stringify(r);
      }),
      observedWithin('B accepts the new key', t0, PROPAGATION_MS, async () => {
        const r = await tryToken(b.url, issuer, clientId, k2.pair);
        return r.ok ? true : JSON.stringify(r);
      }),
    ]);
    // a minimal update (keys only) works too
    const back = await manage(b.url, uri, 'PUT', rat, { jwks: k1.jwks });
    assert.equal(back.status, 200, back.text);
    assert.deepEqual((await manage(a.url, uri, 'GET', rat)).body.jwks, k1.jwks);
    const keyAudit = await storage.sql('SELECT actor FROM audit_log WHERE action = $1 AND target = $2', ['client.keys.set', clientId]);
    assert.deepEqual(keyAudit.map((x) => x.actor), ['registration', 'registration']);

    const del = await manage(a.url, uri, 'DELETE', rat);
    const t1 = Date.now();
    assert.equal(del.status, 204, del.text);
    assert.equal(del.text, '');
    await observedWithin('B refuses the deleted client', t1, PROPAGATION_MS, async () => {
      const r = await tryToken(b.url, issuer, clientId, k1.pair);
      return !r.ok && r.status === 401 && r.error === 'invalid_client' ? true : JSON.stringify(r);
    });
    assertUnauthorized(await manage(b.url, uri, 'GET', rat));
    assertUnauthorized(await manage(b.url, uri, 'DELETE', rat));
    const shown = await admin.call('GET', `/admin/clients/${clientId}`);
    assert.equal(shown.body.status, 'revoked');
    assert.equal(shown.body.revoked_by, 'registration');
    // the other client of the same token is untouched
    assert.equal((await manage(b.url, other.body.registration_client_uri, 'GET', other.body.registration_access_token)).status, 200);
  });

  it('the admin API refuses bad initial-access-token settings and requires the admin', async () => {
    for (const [body, expected] of [
      [{ uses: 0 }, /uses must be a whole number from 1 to 1000/],
      [{ uses: 1.5 }, /uses must be a whole number/],
      [{ expires_in: 0 }, /expires_in must be a whole number from 1 to 2592000/],
      [{ expires_in: '60' }, /expires_in must be a whole number/],
      [{ scope: 'sigil:admin' }, /reserved for the admin client/],
      [{ audiences: [`${issuer}/admin`] }, /must not name Sigil itself/],
      [{ audiences: ['not a uri'] }, /absolute URI/],
    ] as const) {
      const res = await admin.call('POST', '/admin/registration-tokens', body);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.match(res.body.error_description, expected);
    }
    const anonymous = await send(`${a.url}/admin/registration-tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(anonymous.status, 401);
    const usage = await sigil(['registration-tokens', 'create', '--uses', 'many'], cliA);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--uses must be a whole number from 1 to 1000/);
  });

  it('no token or secret of this file reached a log line', () => {
    assert.ok(secrets.length > 10);
    const lines = [...a.logs, ...b.logs];
    const leaks = lines.filter((line) => secrets.some((s) => s && line.includes(s)));
    assert.deepEqual(leaks, []);
  });
});
