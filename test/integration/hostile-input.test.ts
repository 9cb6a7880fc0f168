// Hostile input gets a readable 4xx: never a 500, a reset or a hang. Oversized bodies (a 413 the
// client can read, a sender that never stops cut off), values that cannot reach SQL (U+0000 and other
// controls), JWTs and JSON nested or sized beyond any legitimate one, and requests Node's HTTP layer
// refuses before Koa (parse errors, CONNECT). One real server on real Postgres and Redis.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { clientAssertion, dpopProof, type SigningKeyPair } from '../../src/client/oauth-client.js';
import { LINGER_BOUNDS } from '../../src/server/lingering-close.js';
import { DELEGATION_DEPTH_CEILING } from '../../src/input/input-limits.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { rawExchange, rawRequestBytes, type RawResponse } from '../support/raw-http.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { adminSession, bootstrapAdmin, createClient, type Admin, type TestClient } from '../support/sigil.js';
import { send, type Answer } from '../support/http.js';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const ORDERS = 'https://api.example.com/orders';
/** a hang fails the test instead of stalling the run */

const b64 = (text: string) => Buffer.from(text).toString('base64url');
const nested = (depth: number, inner = '1') => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;

/** A compact JWS over exactly these header and payload texts (any JSON, even invalid), signed with `key`. */
async function signText(key: SigningKeyPair, header: string, payload: string): Promise<string> {
  const input = `${b64(header)}.${b64(payload)}`;
  const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key.privateKey, Buffer.from(input));
  return `${input}.${Buffer.from(signature).toString('base64url')}`;
}

function assertRefusal(res: Answer | RawResponse | undefined, status: number, error: string, description?: RegExp): void {
  assert.ok(res, 'an answer');
  const contentType = 'contentType' in res ? res.contentType : res.headers['content-type'] ?? '';
  const detail = `got ${res.status} ${contentType} ${res.text.slice(0, 300)}`;
  assert.equal(res.status, status, detail);
  assert.match(contentType, /^application\/json\b/, detail);
  assert.equal(res.json?.error, error, detail);
  assert.equal(res.json?.access_token, undefined, detail);
  if (description) assert.match(String(res.json?.error_description), description, detail);
}

describe('hostile input', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;
  let client: TestClient;
  let gateway: TestClient;

  const call = (path: string, init: RequestInit = {}): Promise<Answer> => send(`${server.url}${path}`, init);

  const form = (path: string, body: string, headers: Record<string, string> = {}) =>
    call(path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });

  const authenticated = async (c: TestClient, params: Record<string, string> = {}) =>
    new URLSearchParams({ client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(c.key, c.clientId, server.issuer), ...params }).toString();

  const proof = (c: TestClient) => dpopProof(c.dpopKey, 'POST', `${server.issuer}/token`);

  /** A client assertion for `c` whose payload text is `payload(claims)`: the claims a valid one has. */
  async function assertionWith(c: TestClient, payload: (claims: string) => string, header = `{"alg":"ES256","kid":"${c.key.kid}"}`): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const claims = `"iss":"${c.clientId}","sub":"${c.clientId}","aud":"${server.issuer}","iat":${now},"exp":${now + 60},"jti":"${randomUUID()}"`;
    return signText(c.key, header, payload(claims));
  }

  async function tokenWithAssertion(c: TestClient, assertion: string): Promise<Answer> {
    const body = new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion }).toString();
    return form('/token', body, { dpop: await proof(c) });
  }

  before(async () => {
    storage = await createTestStorage('hostile');
    // the longest delegation chain an operator may allow: every token it makes must still be presentable
    server = await startServer({ env: { ...storageEnv(storage), MAX_DELEGATION_DEPTH: String(DELEGATION_DEPTH_CEILING) } });
    admin = await bootstrapAdmin(server.url, server.issuer);
    client = await createClient(admin, { name: 'hostile input', scope: 'orders:read', audiences: [ORDERS] });
    gateway = await createClient(admin, {
      name: 'hostile gateway', scope: 'orders:read', audiences: [ORDERS], serves: [ORDERS], grant_types: ['client_credentials', TOKEN_EXCHANGE, 'refresh_token'], can_introspect: true,
    });
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
  });

  describe('a body over the limit gets a 413 the client can read', () => {
    const attempts = 25;

    it(`fetch posting 2 MB with a Content-Length reads the 413 every time (${attempts} attempts)`, async () => {
      const body = `grant_type=client_credentials&pad=${'a'.repeat(2 * 1024 * 1024)}`;
      const failures: string[] = [];
      for (let i = 0; i < attempts; i++) {
        try {
          const res = await form('/token', body);
          if (res.status !== 413 || res.json?.error !== 'invalid_request') failures.push(`${res.status} ${res.text.slice(0, 100)}`);
        } catch (err) {
          const e = err as Error & { cause?: { code?: string } };
          failures.push(e.cause?.code ?? e.message);
        }
      }
      assert.deepEqual(failures, [], `${failures.length} of ${attempts} did not read the 413`);
    });

    it(`fetch streaming 1 MiB chunked (no Content-Length) reads the 413 every time (${attempts} attempts)`, async () => {
      const failures: string[] = [];
      for (let i = 0; i < attempts; i++) {
        let sent = 0;
        const stream = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent >= 1024 * 1024) return controller.close();
            sent += 16 * 1024;
            controller.enqueue(new Uint8Array(16 * 1024).fill(0x61));
          },
        });
        try {
          const res = await call('/token', {
            method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: stream, duplex: 'half',
          } as RequestInit);
          if (res.status !== 413 || res.json?.error !== 'invalid_request') failures.push(`${res.status} ${res.text.slice(0, 100)}`);
        } catch (err) {
          const e = err as Error & { cause?: { code?: string } };
          failures.push(e.cause?.code ?? e.message);
        }
      }
      assert.deepEqual(failures, [], `${failures.length} of ${attempts} did not read the 413`);
    });

    it('a client that declares 1 GiB and never stops sending reads the 413 and is cut off within the bound', async () => {
      const head = rawRequestBytes('POST', '/token', [['Content-Type', 'application/x-www-form-urlencoded'], ['Content-Length', String(2 ** 30)]]);
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let sent = 0;
      function* forever() {
        yield head;
        for (;;) {
          sent += chunk.length;
          yield chunk;
        }
      }
      // keeps writing after the answer (a careless client): only the server can end this exchange
      const res = await rawExchange(server.port, forever(), { untilClosed: true, deadlineMs: LINGER_BOUNDS.totalMs + 10_000 });
      assert.notEqual(res.end, 'timeout', 'the server cut the connection off');
      assertRefusal(res.responses[0], 413, 'invalid_request');
      assert.ok(sent < 2 ** 30, 'it was cut off long before its declared body was sent');
    });

    it('a client that drips a chunked body forever after the limit is cut off within the bound', async () => {
      const head = rawRequestBytes('POST', '/token', [['Content-Type', 'application/x-www-form-urlencoded'], ['Transfer-Encoding', 'chunked']]);
      const big = Buffer.alloc(60 * 1024, 0x61);
      function* drip() {
        yield head;
        yield Buffer.concat([Buffer.from(`${big.length.toString(16)}\r\n`), big, Buffer.from('\r\n')]);
        // one byte at a time, well within the idle bound, forever
        for (;;) yield '1\r\na\r\n';
      }
      const res = await rawExchange(server.port, drip(), { untilClosed: true, chunkDelayMs: 100, deadlineMs: LINGER_BOUNDS.totalMs + 10_000 });
      assert.notEqual(res.end, 'timeout', 'the server cut the connection off');
      assertRefusal(res.responses[0], 413, 'invalid_request');
    });

    it('the server still answers after all of them', async () => {
      assert.equal((await call('/health')).status, 200);
    });
  });

  describe('U+0000 and other controls never reach SQL', () => {
    const bad = ['a%00b', '%00', 'a%01b', 'a%0Ab', 'a%7Fb', 'a\u0000b'];

    it('POST /introspect and /revoke with a token holding a control character → 400 invalid_request', async () => {
      for (const path of ['/introspect', '/revoke']) {
        for (const token of bad) {
          const body = `${await authenticated(gateway)}&token=${token.replace('\u0000', '%00')}`;
          assertRefusal(await form(path, body), 400, 'invalid_request', /control/);
        }
      }
    });

    it('POST /token: every parameter (client_id, grant_type, scope, resource, refresh_token, subject_token) → 400 invalid_request', async () => {
      for (const name of ['client_id', 'grant_type', 'scope', 'resource', 'refresh_token', 'subject_token', 'audience', 'unknown_parameter']) {
        for (const value of bad) {
          const body = `${await authenticated(client, { grant_type: 'client_credentials' })}&${name}=${value.replace('\u0000', '%00')}`;
          assertRefusal(await form('/token', body, { dpop: await proof(client) }), 400, 'invalid_request', /control/);
        }
      }
      // a raw NUL, not percent-encoded, in an otherwise valid request
      const raw = `${await authenticated(client, { grant_type: 'client_credentials' })}&scope=orders:read\u0000`;
      assertRefusal(await form('/token', raw, { dpop: await proof(client) }), 400, 'invalid_request', /control/);
    });

    it('a client assertion or DPoP proof whose jti holds U+0000 → invalid_client / invalid_dpop_proof', async () => {
      const assertion = await assertionWith(client, (claims) => `{${claims.replace(/"jti":"[^"]+"/, '"jti":"a\\u0000b"')}}`);
      assertRefusal(await tokenWithAssertion(client, assertion), 401, 'invalid_client', /U\+0000/);

      const now = Math.floor(Date.now() / 1000);
      const { kid: _k, alg: _a, use: _u, ...jwk } = client.dpopKey.publicJwk;
      const dpop = await signText(client.dpopKey, JSON.stringify({ alg: 'ES256', typ: 'dpop+jwt', jwk }),
        `{"htm":"POST","htu":"${server.issuer}/token","iat":${now},"jti":"a\\u0000b"}`);
      const res = await form('/token', await authenticated(client, { grant_type: 'client_credentials' }), { dpop });
      assertRefusal(res, 400, 'invalid_dpop_proof', /U\+0000/);
    });

    it('/register and /register/{client_id}: a NUL in the path or the JSON body → 400', async () => {
      const created = await admin.call('POST', '/admin/registration-tokens', { scope: 'orders:read', audiences: [ORDERS] });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const metadata = `{"client_name":"nul\\u0000name","token_endpoint_auth_method":"private_key_jwt","jwks":${JSON.stringify(client.record.jwks ?? { keys: [client.key.publicJwk] })}}`;
      const res = await call('/register', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${created.body.token}` }, body: metadata });
      assertRefusal(res, 400, 'invalid_client_metadata', /U\+0000/);
      for (const method of ['GET', 'PUT', 'DELETE']) {
        assertRefusal(await call(`/register/abc%00def`, { method, headers: { authorization: 'Bearer x' } }), 400, 'invalid_request', /control/);
      }
    });

    it('the admin API: path parameters and JSON strings holding U+0000 or a lone surrogate → 400', async () => {
      const session = await adminSession(server.url, server.issuer, admin.key);
      for (const [method, path] of [
        ['GET', '/admin/clients/abc%00def'], ['POST', '/admin/clients/abc%00def/revoke'], ['PUT', '/admin/clients/abc%00/jwks'],
        ['GET', '/admin/registration-tokens/abc%00def'], ['POST', '/admin/registration-tokens/%00/revoke'],
      ] as const) {
        const res = await session(method, path, method === 'GET' ? undefined : {});
        assert.equal(res.status, 400, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
        assert.equal(res.body?.error, 'invalid_request');
      }
      const revoke = await session('POST', '/admin/tokens/revoke', { jti: 'abc\u0000def' });
      assert.equal(revoke.status, 400, JSON.stringify(revoke.body));
      const control = await session('POST', '/admin/tokens/revoke', { jti: 'abc\ndef' });
      assert.equal(control.status, 400, JSON.stringify(control.body));
      for (const name of ['nul \u0000 name', 'lone \ud800 surrogate', 'lone \udc00 low']) {
        const res = await session('POST', '/admin/clients', { name, jwks: { keys: [client.key.publicJwk] }, audiences: [ORDERS] });
        assert.equal(res.status, 400, `${JSON.stringify(name)}: ${res.status} ${JSON.stringify(res.body)}`);
        assert.equal(res.body?.error, 'invalid_client_metadata');
      }
    });
  });

  describe('JWTs and JSON nested or sized beyond any legitimate one', () => {
    let deepToken: string;
    before(async () => {
      deepToken = await signText(client.key, '{"alg":"ES256","typ":"at+jwt"}', `{"sub":"x","x":${nested(5_000)}}`);
    });

    it('a signed client assertion nested 10,000 deep → 401 invalid_client, not a stack overflow', async () => {
      const assertion = await assertionWith(client, (claims) => `{${claims},"x":${nested(10_000)}}`);
      assertRefusal(await tokenWithAssertion(client, assertion), 401, 'invalid_client');
    });

    it('a signed client assertion nested 17 deep (under 8 KiB) → 401 invalid_client', async () => {
      const assertion = await assertionWith(client, (claims) => `{${claims},"x":${nested(17)}}`);
      assertRefusal(await tokenWithAssertion(client, assertion), 401, 'invalid_client', /nested deeper than 16/);
      // 16 deep in all (the claims object is one level) is still a JWT Sigil reads
      const ok = await assertionWith(client, (claims) => `{${claims},"x":${nested(15)}}`);
      assert.equal((await tokenWithAssertion(client, ok)).status, 200);
    });

    it('a client assertion header nested deep, over 8 KiB, or not three segments → 401 invalid_client', async () => {
      const deepHeader = await assertionWith(client, (claims) => `{${claims}}`, `{"alg":"ES256","x":${nested(20)}}`);
      assertRefusal(await tokenWithAssertion(client, deepHeader), 401, 'invalid_client', /nested/);
      const long = await assertionWith(client, (claims) => `{${claims},"pad":"${'a'.repeat(8 * 1024)}"}`);
      assertRefusal(await tokenWithAssertion(client, long), 401, 'invalid_client', /longer than/);
      for (const shape of ['a.b', 'a.b.c.d.e', 'a..c', `${b64('{}')}.${b64('{}')}.***`]) {
        assertRefusal(await tokenWithAssertion(client, shape), 401, 'invalid_client');
      }
    });

    it('a DPoP proof nested deep → 400 invalid_dpop_proof', async () => {
      const now = Math.floor(Date.now() / 1000);
      const { kid: _k, alg: _a, use: _u, ...jwk } = client.dpopKey.publicJwk;
      const header = JSON.stringify({ alg: 'ES256', typ: 'dpop+jwt', jwk });
      for (const [h, p] of [
        [header, `{"htm":"POST","htu":"${server.issuer}/token","iat":${now},"jti":"${randomUUID()}","x":${nested(17)}}`],
        [`${header.slice(0, -1)},"x":${nested(17)}}`, `{"htm":"POST","htu":"${server.issuer}/token","iat":${now},"jti":"${randomUUID()}"}`],
      ] as const) {
        const dpop = await signText(client.dpopKey, h, p);
        assertRefusal(await form('/token', await authenticated(client, { grant_type: 'client_credentials' }), { dpop }), 400, 'invalid_dpop_proof', /nested/);
      }
    });

    it('a bootstrap proof nested deep → 400 invalid_request, before it is verified', async () => {
      const { kid: _k, alg: _a, use: _u, ...jwk } = client.dpopKey.publicJwk;
      const proofJwt = await signText(client.dpopKey, JSON.stringify({ alg: 'ES256', typ: 'sigil-bootstrap+jwt', jwk }),
        `{"aud":"${server.issuer}/admin/bootstrap","iat":${Math.floor(Date.now() / 1000)},"x":${nested(17)}}`);
      const res = await call('/admin/bootstrap', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ proof: proofJwt }) });
      assertRefusal(res, 400, 'invalid_request', /sigil-bootstrap/);
    });

    it('subject_token and actor_token nested deep or over 8 KiB → 400 invalid_request', async () => {
      const long = `${b64('{"alg":"ES256"}')}.${b64(`{"pad":"${'a'.repeat(9 * 1024)}"}`)}.AAAA`;
      for (const name of ['subject_token', 'actor_token']) {
        for (const value of [deepToken, long]) {
          const body = await authenticated(gateway, {
            grant_type: TOKEN_EXCHANGE, subject_token_type: ACCESS_TOKEN_TYPE, actor_token_type: ACCESS_TOKEN_TYPE, subject_token: 'x.y.z', [name]: value,
          });
          assertRefusal(await form('/token', body, { dpop: await proof(gateway) }), 400, 'invalid_request', new RegExp(name));
        }
      }
    });

    it('a token nested 5,000 deep at /introspect is inactive and at /revoke a 200 (RFC 7662 §2.2, RFC 7009 §2.2), not a 500', async () => {
      const introspected = await form('/introspect', await authenticated(gateway, { token: deepToken }));
      assert.equal(introspected.status, 200, introspected.text);
      assert.deepEqual(introspected.json, { active: false });
      const revoked = await form('/revoke', await authenticated(gateway, { token: deepToken }));
      assert.equal(revoked.status, 200, revoked.text);
    });

    it(`with MAX_DELEGATION_DEPTH at its ceiling (${DELEGATION_DEPTH_CEILING}) every token an exchange makes can be presented again, and one more hop is refused`, async () => {
      const exchange = async (subject: string) => {
        const body = await authenticated(gateway, { grant_type: TOKEN_EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, audience: ORDERS });
        return form('/token', body, { dpop: await proof(gateway) });
      };
      const first = await form('/token', await authenticated(gateway, { grant_type: 'client_credentials' }), { dpop: await proof(gateway) });
      assert.equal(first.status, 200, first.text);
      let token = first.json.access_token as string;
      for (let hop = 1; hop <= DELEGATION_DEPTH_CEILING; hop++) {
        const res = await exchange(token);
        assert.equal(res.status, 200, `hop ${hop}: ${res.text}`);
        token = res.json.access_token;
      }
      assertRefusal(await exchange(token), 400, 'invalid_request', /delegation/);
    });

    it('admin bodies that are JSON but not an object (null, [], 1, "x") → 400, on every route that takes a body', async () => {
      const session = await adminSession(server.url, server.issuer, admin.key);
      for (const [method, path] of [
        ['POST', '/admin/clients'], ['PUT', `/admin/clients/${client.clientId}/jwks`], ['POST', `/admin/clients/no-such-client/revoke`],
        ['POST', '/admin/tokens/revoke'], ['POST', '/admin/registration-tokens'], ['POST', '/admin/bootstrap'],
      ] as const) {
        for (const body of [null, [], 1, 'x']) {
          const res = await session(method, path, body);
          assert.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}: ${res.status} ${JSON.stringify(res.body)}`);
          assert.equal(typeof res.body?.error, 'string');
        }
      }
    });

    it('registration bodies nested deeper than 16 (also 25,000 deep) and admin bodies 100 deep → 400', async () => {
      const created = await admin.call('POST', '/admin/registration-tokens', { scope: 'orders:read', audiences: [ORDERS] });
      for (const depth of [17, 25_000]) {
        const metadata = `{"client_name":"deep","token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[]},"x":${nested(depth)}}`;
        const res = await call('/register', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${created.body.token}` }, body: metadata });
        assertRefusal(res, 400, 'invalid_client_metadata', /nested/);
      }
      const session = await adminSession(server.url, server.issuer, admin.key);
      const deep = JSON.parse(nested(100, '"x"')) as unknown;
      for (const [method, path] of [['POST', '/admin/clients'], ['POST', '/admin/tokens/revoke'], ['POST', '/admin/registration-tokens'], ['POST', '/admin/bootstrap']] as const) {
        const res = await session(method, path, { name: 'deep', jti: 'x', proof: 'x', x: deep });
        assert.ok(res.status === 400 || res.status === 403, `${path}: ${res.status} ${JSON.stringify(res.body)}`);
        assert.equal(typeof res.body?.error, 'string');
      }
    });
  });

  describe('requests refused by the HTTP layer get an answer too', () => {
    it('CONNECT → 405 JSON (Node would destroy the socket unanswered)', async () => {
      for (const target of ['127.0.0.1:443', '/token']) {
        const res = await rawExchange(server.port, [rawRequestBytes('CONNECT', target, [])]);
        assert.equal(res.end, 'answered', `CONNECT ${target}: ${res.end} ${res.error ?? ''}`);
        assertRefusal(res.responses[0], 405, 'invalid_request');
      }
    });

    it('a request pipelined before a CONNECT still gets its answer, then the CONNECT its 405', async () => {
      const bytes = Buffer.concat([rawRequestBytes('GET', '/health', []), rawRequestBytes('CONNECT', '127.0.0.1:443', [])]);
      const res = await rawExchange(server.port, [bytes], { expect: 2 });
      assert.equal(res.end, 'answered', `${res.end} ${res.error ?? ''}: ${res.responses.length} responses`);
      assert.equal(res.responses[0]?.status, 200);
      assertRefusal(res.responses[1], 405, 'invalid_request');
    });

    it('every complete request pipelined before a malformed one is answered, in order, before its 400 (found by the fuzz suite)', async () => {
      // /token answers asynchronously: its answer is not written yet when /health's is done
      const bytes = Buffer.concat([rawRequestBytes('GET', '/health', []), rawRequestBytes('POST', '/token', [['content-type', 'application/x-www-form-urlencoded']], 'grant_type=client_credentials'), Buffer.from('\u0000garbage\r\n\r\n')]);
      const res = await rawExchange(server.port, [bytes], { expect: 3 });
      assert.equal(res.end, 'answered', `${res.end} ${res.error ?? ''}: ${res.responses.length} responses`);
      assert.equal(res.responses[0]?.status, 200);
      assertRefusal(res.responses[1], 401, 'invalid_client');
      assertRefusal(res.responses[2], 400, 'invalid_request');
    });

    it('what the HTTP parser refuses (bad method, bad header, bad chunk, header overflow) → JSON 400 / 431', async () => {
      const cases: Array<[string, string | Buffer, number]> = [
        ['an unknown method', 'FROB /token HTTP/1.1\r\nHost: x\r\n\r\n', 400],
        ['a NUL in a header value', 'GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n', 400],
        ['Content-Length with Transfer-Encoding', 'POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
        ['a broken chunk', 'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n', 400],
        ['80 KiB of headers', `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(80 * 1024)}\r\n\r\n`, 431],
        ['HTTP/1.2', 'GET /health HTTP/1.2\r\nHost: x\r\n\r\n', 400],
      ];
      for (const [what, bytes, status] of cases) {
        const res = await rawExchange(server.port, [bytes], { stopOnResponse: true });
        assert.equal(res.end, 'answered', `${what}: ${res.end} ${res.error ?? ''}`);
        assertRefusal(res.responses[0], status, 'invalid_request');
      }
    });

    it('a client that half-closes after sending its request still gets the answer (a token)', async () => {
      for (let i = 0; i < 5; i++) {
        const body = await authenticated(client, { grant_type: 'client_credentials' });
        const bytes = rawRequestBytes('POST', '/token', [['Content-Type', 'application/x-www-form-urlencoded'], ['DPoP', await proof(client)]], body);
        const res = await rawExchange(server.port, [bytes], { halfClose: true });
        assert.equal(res.end, 'answered', `attempt ${i + 1}: ${res.end} ${res.error ?? ''}`);
        assert.equal(res.responses[0]!.status, 200, res.responses[0]!.text);
        assert.equal(typeof res.responses[0]!.json?.access_token, 'string');
      }
    });

    it('an HTTP/1.1 request without Host → JSON 400; an Expect other than 100-continue → JSON 417', async () => {
      const noHost = await rawExchange(server.port, ['GET /health HTTP/1.1\r\n\r\n']);
      assertRefusal(noHost.responses[0], 400, 'invalid_request', /Host/);
      const expect = await rawExchange(server.port, [rawRequestBytes('POST', '/token', [['Expect', 'something-else'], ['Content-Type', 'application/x-www-form-urlencoded']], 'a=b')]);
      assertRefusal(expect.responses[0], 417, 'invalid_request');
      // HTTP/1.0 needs no Host
      const old = await rawExchange(server.port, ['GET /health HTTP/1.0\r\n\r\n']);
      assert.equal(old.responses[0]?.status, 200);
    });

    it('a body cut short by the client closing its side → JSON 400', async () => {
      const bytes = rawRequestBytes('POST', '/token', [['Content-Type', 'application/x-www-form-urlencoded'], ['Content-Length', '100']], 'grant_type=client_credentials');
      const res = await rawExchange(server.port, [bytes], { halfClose: true });
      assert.equal(res.end, 'answered', `${res.end} ${res.error ?? ''}`);
      assert.ok(res.responses[0]!.status === 400, `${res.responses[0]!.status} ${res.responses[0]!.text}`);
      assert.equal(typeof res.responses[0]!.json?.error, 'string');
    });
  });

  describe('after all of the above', () => {
    it('the server process is alive, logged nothing unhandled, and still issues tokens', async () => {
      assert.equal(server.child.exitCode, null);
      const crashes = server.logs.filter((l) => /unhandled|uncaught|Maximum call stack|invalid byte sequence/i.test(l));
      assert.deepEqual(crashes, [], 'nothing went unhandled');
      const res = await form('/token', await authenticated(client, { grant_type: 'client_credentials' }), { dpop: await proof(client) });
      assert.equal(res.status, 200, res.text);
    });
  });
});
