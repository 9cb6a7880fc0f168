// How much argon2 work presenting initial access tokens can cause (issue 10, finding 9), over HTTP
// on a real server: dead and unknown token ids never reach argon2 (they spend none of the budget),
// and past the bound per token id or per source address /register answers 429 with Retry-After.
// Requests leave from distinct loopback addresses (127.0.0.x) so each test has its own address budget.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { generateClientKey } from '../../src/client/oauth-client.js';
import { untilReady } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, type Admin } from '../support/sigil.js';
import { eventually } from '../support/wait.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any;
}

describe('/register: argon2 work is bounded', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;
  const secrets: string[] = [];

  before(async () => {
    storage = await createTestStorage('reglimits');
    server = await startServer({ env: storageEnv(storage) });
    await untilReady(server.url);
    admin = await bootstrapAdmin(server.url, server.issuer);
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
  });

  async function newToken(settings: Record<string, unknown> = {}): Promise<{ id: string; token: string }> {
    const res = await admin.call('POST', '/admin/registration-tokens', { scope: 'orders:read', audiences: ['https://api.example.com/orders'], ...settings });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    secrets.push(res.body.token, res.body.token.split('.')[1]);
    return { id: res.body.id, token: res.body.token };
  }

  const forged = (token: string) => `${token.split('.')[0]}.${randomBytes(32).toString('base64url')}`;

  /** POST /register from the local address `from` (the server tells callers apart by address) */
  async function register(from: string, token: string): Promise<Answer> {
    const { publicJwks } = await generateClientKey('ES256');
    const body = JSON.stringify({ jwks: publicJwks, client_name: 'limits' });
    return new Promise((resolve, reject) => {
      const req = http.request(`${server.url}/register`, {
        method: 'POST',
        localAddress: from,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${token}` },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : undefined });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  function assertThrottled(a: Answer, maxWait: number): void {
    assert.equal(a.status, 429, JSON.stringify(a.body));
    assert.equal(a.body?.error, 'temporarily_unavailable');
    assert.match(a.body.error_description, /too many attempts/);
    assert.match(String(a.headers['content-type']), /^application\/json/);
    assert.equal(a.headers['cache-control'], 'no-store');
    const wait = Number(a.headers['retry-after']);
    assert.ok(Number.isInteger(wait) && wait >= 1 && wait <= maxWait, `Retry-After: ${a.headers['retry-after']}`);
  }

  it('revoked, expired, used-up and unknown token ids: 401 every time, far past the bound, and the address budget is untouched', async () => {
    const revoked = await newToken({ uses: 5 });
    assert.equal((await admin.call('POST', `/admin/registration-tokens/${revoked.id}/revoke`)).status, 200);
    const usedUp = await newToken();
    const used = await register('127.0.0.9', usedUp.token);
    assert.equal(used.status, 201, JSON.stringify(used.body));
    secrets.push(used.body.registration_access_token);
    const expired = await newToken({ expires_in: 1 });
    await eventually('the token to expire', async () => (await admin.call('GET', `/admin/registration-tokens/${expired.id}`)).body?.status === 'expired');
    const unknown = `sit_${randomBytes(8).toString('hex')}.${randomBytes(32).toString('base64url')}`;

    const cases: Array<[string, string, RegExp]> = [
      [revoked.token, 'revoked', /was revoked/], [forged(revoked.token), 'revoked (wrong secret)', /was revoked/],
      [usedUp.token, 'used up', /no use left/], [forged(usedUp.token), 'used up (wrong secret)', /no use left/],
      [expired.token, 'expired', /has expired/], [forged(expired.token), 'expired (wrong secret)', /has expired/],
      [unknown, 'unknown', /is not valid/],
    ];
    // 15 rounds: 105 presentations from one address, 30 per dead token id (bounds: 20 and 10)
    for (let round = 0; round < 15; round++) {
      for (const [token, what, description] of cases) {
        const a = await register('127.0.0.2', token);
        assert.equal(a.status, 401, `${what}, round ${round}: ${JSON.stringify(a.body)}`);
        assert.equal(a.body?.error, 'invalid_token');
        assert.match(a.body.error_description, description);
      }
    }
    // had any of those run argon2, this address would be past its bound
    const live = await newToken();
    const ok = await register('127.0.0.2', live.token);
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    secrets.push(ok.body.registration_access_token);
  });

  // Buckets refill with time (one check per 6 s per token, per 3 s per address) however loaded the
  // machine is, so each burst below exceeds its bound by far more than any refill during it can add.

  it('past 10 argon2 checks for one token id: 429 with Retry-After, from any address; a bound, not a lockout', async () => {
    const target = await newToken();
    const burst = await Promise.all(Array.from({ length: 16 }, () => register('127.0.0.3', forged(target.token))));
    const statuses = burst.map((a) => a.status);
    assert.ok(statuses.every((x) => x === 401 || x === 429), statuses.join(','));
    assert.ok(statuses.filter((x) => x === 401).length >= 10, `the first 10 are checked: ${statuses.join(',')}`);
    assert.ok(statuses.includes(429), `past 10 the token's checks are refused: ${statuses.join(',')}`);
    for (const a of burst.filter((x) => x.status === 429)) assertThrottled(a, 6);
    // the bound is the token's: another address meets it too
    const elsewhere = await Promise.all(Array.from({ length: 8 }, () => register('127.0.0.4', forged(target.token))));
    const throttled = elsewhere.filter((a) => a.status === 429);
    assert.ok(throttled.length > 0, elsewhere.map((a) => a.status).join(','));
    for (const a of throttled) assertThrottled(a, 6);
    // once a check is available again the partner gets in
    const done = await eventually('a check for the token to become available', async () => {
      const a = await register('127.0.0.4', target.token);
      return a.status === 429 ? undefined : a;
    }, { timeout: 30_000 });
    assert.equal(done.status, 201, JSON.stringify(done.body));
    secrets.push(done.body.registration_access_token);
  });

  it('past 20 argon2 checks from one address, whatever the token ids: 429 with Retry-After; other addresses go on', async () => {
    const targets = await Promise.all(Array.from({ length: 5 }, () => newToken()));
    // 9 forged secrets per token (under its bound of 10): only the address's bound of 20 can refuse
    const burst = await Promise.all(targets.flatMap((t) => Array.from({ length: 9 }, () => register('127.0.0.5', forged(t.token)))));
    const statuses = burst.map((a) => a.status);
    assert.ok(statuses.every((x) => x === 401 || x === 429), statuses.join(','));
    assert.ok(statuses.filter((x) => x === 401).length >= 20, `the first 20 are checked: ${statuses.join(',')}`);
    assert.ok(statuses.includes(429), `past 20 the address's checks are refused: ${statuses.join(',')}`);
    for (const a of burst.filter((x) => x.status === 429)) assertThrottled(a, 3);
    const other = await register('127.0.0.6', targets[0]!.token);
    assert.equal(other.status, 201, JSON.stringify(other.body));
    secrets.push(other.body.registration_access_token);
  });

  it('no initial access token or secret reached a log line', () => {
    assert.ok(secrets.length > 5);
    const leaks = server.logs.filter((line) => secrets.some((s) => s && line.includes(s)));
    assert.deepEqual(leaks, []);
  });
});
