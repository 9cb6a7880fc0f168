// The HTTP surface as users, gateways and attackers meet it: discovery, JWKS, RFC 6749 §5.2 errors
// for every kind of bad request, body limits, hostile input, operational endpoints, request ids,
// logs without credentials, and the token_events record.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { clientAssertion, dpopProof, generateClientKey, keyPairFromPrivateJwk } from '../../src/client/oauth-client.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, type Admin, type TestClient } from '../support/sigil.js';
import { eventually } from '../support/wait.js';
import { REQUEST_TIMEOUT_MS, send, type Answer } from '../support/http.js';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
/** every request gets at most this long: a hang fails the test instead of stalling the run */

function parseJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** An RFC 6749 §5.2 error: JSON content type, an `error` string, the expected status. */
function assertJsonError(res: { status: number; contentType: string | null; json: any; text: string }, status: number | number[], error?: string | string[]): void {
  const statuses = Array.isArray(status) ? status : [status];
  const detail = `got ${res.status} ${res.contentType ?? '(no content type)'} ${res.text.slice(0, 300)}`;
  assert.ok(statuses.includes(res.status), `expected status ${statuses.join(' or ')}; ${detail}`);
  assert.match(res.contentType ?? '', /^application\/json\b/i, `expected an application/json error body; ${detail}`);
  assert.equal(typeof res.json?.error, 'string', `expected a JSON body with an "error" string; ${detail}`);
  if (error !== undefined) {
    const errors = Array.isArray(error) ? error : [error];
    assert.ok(errors.includes(res.json.error), `expected error ${errors.join(' or ')}; ${detail}`);
  }
  assert.equal(res.json.access_token, undefined, 'an error response carries no token');
}

const viewOf = (a: Answer) => ({ status: a.status, contentType: a.headers.get('content-type'), json: a.json, text: a.text });

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  text: string;
  json: any;
  /** how the connection ended, when it ended in an error (ECONNRESET, EPIPE...) */
  socketError?: string;
}

const rawView = (a: RawAnswer) => ({ status: a.status, contentType: a.headers['content-type'] ?? null, json: a.json, text: a.text || `(no response; socket: ${a.socketError ?? 'closed'})` });

/**
 * One HTTP/1.1 exchange over a raw socket, for what fetch will not send (absolute-form targets).
 * Stops writing the body as soon as the server answers.
 */
async function rawRequest(port: number, head: string, body: Buffer[] = []): Promise<RawAnswer> {
  const socket = connect(port, '127.0.0.1');
  const received: Buffer[] = [];
  let socketError: string | undefined;
  const done = new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      socketError = err.code ?? err.message;
    });
    socket.on('close', () => resolve());
  });
  const timer = setTimeout(() => socket.destroy(new Error('no answer within the timeout')), REQUEST_TIMEOUT_MS);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const write = (b: Buffer | string) => new Promise<void>((resolve) => socket.write(b, () => resolve()));
    await write(head);
    for (const chunk of body) {
      if (received.length || socket.destroyed) break;
      await write(chunk);
    }
    await done;
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
  if (socketError === 'no answer within the timeout') assert.fail(`raw request did not get an answer within ${REQUEST_TIMEOUT_MS} ms`);
  return parseRawResponse(Buffer.concat(received), socketError);
}

function parseRawResponse(buf: Buffer, socketError: string | undefined): RawAnswer {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, headers: {}, text: '', json: undefined, socketError };
  const [statusLine, ...headerLines] = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let rest = buf.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts: Buffer[] = [];
    for (;;) {
      const nl = rest.indexOf('\r\n');
      if (nl < 0) break;
      const size = parseInt(rest.subarray(0, nl).toString('latin1'), 16);
      if (!size) break;
      parts.push(rest.subarray(nl + 2, nl + 2 + size));
      rest = rest.subarray(nl + 2 + size + 2);
    }
    rest = Buffer.concat(parts);
  } else if (headers['content-length'] !== undefined) {
    rest = rest.subarray(0, Number(headers['content-length']));
  }
  const text = rest.toString('utf8');
  return { status, headers, text, json: parseJson(text), socketError };
}

describe('HTTP surface', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;
  let client: TestClient;
  let tokenUrl: string;
  /** every credential this suite sent or received: none may ever appear in a log line */
  const secrets = new Set<string>();

  const call = (path: string, init: RequestInit = {}): Promise<Answer> => send(`${server.url}${path}`, init);

  /** like call(), but a connection failure (EPIPE, ECONNRESET) is an answer with status 0, for assertions to report */
  async function callOrFailure(path: string, init: RequestInit = {}): Promise<Answer> {
    try {
      return await call(path, init);
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      if (err instanceof assert.AssertionError) throw err; // a hang
      const text = `(no HTTP response: ${e.cause?.code ?? e.cause?.message ?? e.message})`;
      return { status: 0, headers: new Headers(), contentType: '', text, body: undefined, json: undefined };
    }
  }

  async function assertion(c: TestClient, audience = server.issuer): Promise<string> {
    const a = await clientAssertion(c.key, c.clientId, audience);
    secrets.add(a);
    return a;
  }

  async function proof(c: TestClient): Promise<string> {
    const p = await dpopProof(c.dpopKey, 'POST', `${server.issuer}/token`);
    secrets.add(p);
    return p;
  }

  /** A complete, valid client_credentials form for `c`, plus `params`. */
  async function validForm(c: TestClient, params: Record<string, string> = {}): Promise<URLSearchParams> {
    return new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(c), ...params });
  }

  /** POST /token as a browser-ish client would (Accept: text/html), with a fresh valid DPoP proof unless told otherwise. */
  async function postToken(body: string | Buffer | URLSearchParams, opts: { headers?: Record<string, string>; dpopFor?: TestClient } = {}): Promise<Answer> {
    const headers: Record<string, string> = { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded', ...opts.headers };
    if (opts.dpopFor) headers.dpop = await proof(opts.dpopFor);
    const res = await call('/token', { method: 'POST', headers, body: body instanceof URLSearchParams ? body.toString() : typeof body === 'string' ? body : new Uint8Array(body) });
    if (typeof res.json?.access_token === 'string') secrets.add(res.json.access_token);
    return res;
  }

  async function issue(c: TestClient, headers: Record<string, string> = {}): Promise<Answer> {
    const res = await postToken(await validForm(c), { headers, dpopFor: c });
    assert.equal(res.status, 200, `a valid token request must succeed: ${res.status} ${res.text}`);
    assert.equal(typeof res.json.access_token, 'string');
    return res;
  }

  const jtiOf = (token: string): string => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti;

  function logRecords(): Array<Record<string, any>> {
    return server.logs.map(parseJson).filter((r): r is Record<string, any> => !!r && typeof r === 'object');
  }

  before(async () => {
    storage = await createTestStorage('surface');
    server = await startServer({ env: storageEnv(storage) });
    admin = await bootstrapAdmin(server.url, server.issuer);
    client = await createClient(admin, { name: 'surface client', scope: 'orders:read orders:write', audiences: ['https://api.example.com/orders'] });
    tokenUrl = `${server.issuer}/token`;
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
  });

  describe('discovery', () => {
    it('serves the same metadata at /.well-known/oauth-authorization-server and /.well-known/openid-configuration', async () => {
      const rfc8414 = await call('/.well-known/oauth-authorization-server');
      const oidc = await call('/.well-known/openid-configuration');
      assert.equal(rfc8414.status, 200, rfc8414.text);
      assert.equal(oidc.status, 200, oidc.text);
      assert.match(rfc8414.headers.get('content-type') ?? '', /^application\/json\b/);
      assert.match(oidc.headers.get('content-type') ?? '', /^application\/json\b/);
      assert.deepEqual(rfc8414.json, oidc.json);
    });

    it('lists issuer, every endpoint, private_key_jwt only, DPoP algorithms without none/HS*, and client_credentials', async () => {
      const { json: md } = await call('/.well-known/oauth-authorization-server');
      assert.equal(md.issuer, server.issuer);
      assert.equal(md.token_endpoint, tokenUrl);
      for (const field of ['token_endpoint', 'jwks_uri', 'revocation_endpoint', 'introspection_endpoint', 'registration_endpoint']) {
        assert.equal(typeof md[field], 'string', `${field} is listed`);
        assert.ok((md[field] as string).startsWith(`${server.issuer}/`), `${field} (${md[field]}) is issuer-based`);
      }
      assert.deepEqual(md.token_endpoint_auth_methods_supported, ['private_key_jwt', 'spiffe_jwt'], 'private_key_jwt and JWT-SVIDs, nothing else');
      assert.ok(Array.isArray(md.dpop_signing_alg_values_supported) && md.dpop_signing_alg_values_supported.length > 0, 'dpop_signing_alg_values_supported is listed');
      for (const alg of md.dpop_signing_alg_values_supported as string[]) {
        assert.ok(alg !== 'none' && !/^HS/i.test(alg), `DPoP alg ${alg} must be asymmetric`);
      }
      assert.ok(Array.isArray(md.grant_types_supported) && md.grant_types_supported.includes('client_credentials'), `grant_types_supported: ${JSON.stringify(md.grant_types_supported)}`);
    });

    it('lists token exchange and refresh_token in grant_types_supported', async () => {
      const { json: md } = await call('/.well-known/oauth-authorization-server');
      assert.ok(md.grant_types_supported.includes(TOKEN_EXCHANGE), `grant_types_supported: ${JSON.stringify(md.grant_types_supported)}`);
      assert.ok(md.grant_types_supported.includes('refresh_token'), `grant_types_supported: ${JSON.stringify(md.grant_types_supported)}`);
    });
  });

  describe('JWKS', () => {
    it('is cacheable JSON with only public ES256 signing keys', async () => {
      const { json: md } = await call('/.well-known/oauth-authorization-server');
      const res = await fetch(md.jwks_uri.replace(server.issuer, server.url), { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/(jwk-set\+)?json\b/);
      const maxAge = /(?:^|[,\s])max-age=(\d+)/.exec(res.headers.get('cache-control') ?? '')?.[1];
      assert.ok(maxAge !== undefined && Number(maxAge) > 0, `Cache-Control needs a positive max-age, got "${res.headers.get('cache-control')}"`);
      const jwks = (await res.json()) as { keys: Array<Record<string, unknown>> };
      assert.ok(Array.isArray(jwks.keys) && jwks.keys.length > 0, 'at least one key');
      for (const key of jwks.keys) {
        for (const m of PRIVATE_MEMBERS) assert.equal(key[m], undefined, `key ${String(key.kid)} must not expose "${m}"`);
        assert.equal(typeof key.kid, 'string');
        assert.equal(key.alg, 'ES256');
        assert.equal(key.use, 'sig');
      }
    });
  });

  describe('errors are RFC 6749 §5.2 JSON, also for Accept: text/html', () => {
    it('no client authentication → 401 invalid_client (RFC 6749 §5.2)', async () => {
      const res = await postToken(new URLSearchParams({ grant_type: 'client_credentials' }));
      assertJsonError(viewOf(res), 401, 'invalid_client');
    });

    it('an unknown client → 401 invalid_client', async () => {
      const key = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
      const stranger: TestClient = { clientId: `no-such-client-${randomUUID()}`, key, dpopKey: key, record: {} };
      const res = await postToken(await validForm(stranger), { dpopFor: stranger });
      assertJsonError(viewOf(res), 401, 'invalid_client');
    });

    for (const grant of ['password', 'authorization_code']) {
      it(`grant_type=${grant} from a valid client → 400 JSON error`, async () => {
        const res = await postToken(await validForm(client, { grant_type: grant, username: 'u', password: 'p', code: 'c', redirect_uri: 'https://x.example/cb' }), { dpopFor: client });
        assertJsonError(viewOf(res), 400, ['unsupported_grant_type', 'unauthorized_client', 'invalid_request', 'invalid_grant']);
      });
    }

    it('GET /token → 405 or 404 JSON', async () => {
      const res = await call('/token', { headers: { accept: 'text/html' } });
      assertJsonError(viewOf(res), [404, 405]);
    });

    it('an unknown path → 404 JSON', async () => {
      for (const method of ['GET', 'POST']) {
        const res = await call(`/no/such/path-${randomUUID()}`, { method, headers: { accept: 'text/html' } });
        assertJsonError(viewOf(res), 404);
      }
    });

    it('a scope the client does not hold → 400 invalid_scope', async () => {
      const res = await postToken(await validForm(client, { scope: 'orders:read admin:everything' }), { dpopFor: client });
      assertJsonError(viewOf(res), 400, 'invalid_scope');
    });

    it('a resource that is not a registered audience → 400 invalid_target', async () => {
      const res = await postToken(await validForm(client, { resource: 'https://evil.example/api' }), { dpopFor: client });
      assertJsonError(viewOf(res), 400, 'invalid_target');
    });
  });

  describe('request bodies', () => {
    it('a body over 64 KiB → 413 JSON', async () => {
      const body = `${(await validForm(client)).toString()}&pad=${'a'.repeat(64 * 1024)}`;
      const res = await callOrFailure('/token', { method: 'POST', headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' }, body });
      assertJsonError(viewOf(res), 413);
    });

    it('a 1 MiB body → 413, and the server stays up', async () => {
      const body = `grant_type=client_credentials&pad=${'a'.repeat(1024 * 1024)}`;
      const res = await callOrFailure('/token', { method: 'POST', headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' }, body });
      assertJsonError(viewOf(res), 413);
      const health = await call('/health');
      assert.equal(health.status, 200);
    });

    it('an oversized chunked body (no Content-Length) → 413 JSON', async () => {
      const rid = `chunked-${randomUUID()}`;
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent === 0) controller.enqueue(new TextEncoder().encode('grant_type=client_credentials&pad='));
          if (sent >= 1024 * 1024) return controller.close();
          sent += 16 * 1024;
          controller.enqueue(new Uint8Array(16 * 1024).fill(0x61));
        },
      });
      const res = await callOrFailure('/token', {
        method: 'POST',
        headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded', 'x-request-id': rid },
        body: stream,
        duplex: 'half',
      } as RequestInit);
      // the server's side: it did refuse the body as too large (not something else)
      const refusal = await eventually('the 413 refusal log line', async () => logRecords().find((r) => r.requestId === rid && r.event === 'token.refused'));
      assert.match(String(refusal.reason), /exceed/i, JSON.stringify(refusal));
      // the client's side: the 413 reached it
      assertJsonError(viewOf(res), 413);
    });

    it('raw invalid UTF-8 bytes (0xFF 0xFE) → 400 invalid_request', async () => {
      const form = (await validForm(client)).toString();
      const body = Buffer.concat([Buffer.from(`${form}&scope=orders:read`), Buffer.from([0xff, 0xfe])]);
      const res = await postToken(body, { dpopFor: client });
      assertJsonError(viewOf(res), 400, 'invalid_request');
    });

    it('a percent-encoded invalid UTF-8 sequence (scope=%FF) → 400', async () => {
      const body = `${(await validForm(client)).toString()}&scope=%FF`;
      const res = await postToken(body, { dpopFor: client });
      assertJsonError(viewOf(res), 400);
    });

    it('malformed percent-encoding (%zz, a dangling %) → 400', async () => {
      for (const bad of ['scope=orders%zzread', 'scope=orders:read%', 'pad=%E0%A4%A']) {
        const body = `${(await validForm(client)).toString()}&${bad}`;
        const res = await postToken(body, { dpopFor: client });
        assertJsonError(viewOf(res), 400);
      }
    });

    it('Content-Type: application/json → 400 JSON', async () => {
      const body = JSON.stringify(Object.fromEntries(await validForm(client)));
      const res = await postToken(body, { headers: { 'content-type': 'application/json' }, dpopFor: client });
      assertJsonError(viewOf(res), 400);
    });

    it('a parameter given twice (grant_type) → 400 invalid_request, even when both copies are valid', async () => {
      const form = await validForm(client);
      form.append('grant_type', 'client_credentials');
      const res = await postToken(form, { dpopFor: client });
      assertJsonError(viewOf(res), 400, 'invalid_request');
    });
  });

  describe('hostile input gets a 4xx JSON answer, never a 500', () => {
    it('a client_assertion that is not a JWT', async () => {
      const form = new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: 'this-is-not-a-jwt' });
      const res = await postToken(form, { dpopFor: client });
      assertJsonError(viewOf(res), [400, 401], ['invalid_client', 'invalid_request']);
    });

    it('a client_assertion of three garbage segments', async () => {
      const form = new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: '@@@.%%%.!!!', client_id: client.clientId });
      const res = await postToken(form, { dpopFor: client });
      assertJsonError(viewOf(res), [400, 401], ['invalid_client', 'invalid_request']);
    });

    it('a DPoP header that is garbage → invalid_dpop_proof', async () => {
      for (const dpop of ['garbage', 'a.b.c', 'eyJhbGciOiJub25lIn0.e30.']) {
        const res = await postToken(await validForm(client), { headers: { dpop } });
        assertJsonError(viewOf(res), 400, 'invalid_dpop_proof');
      }
    });

    it('a 10 KB DPoP header value → invalid_dpop_proof', async () => {
      const res = await postToken(await validForm(client), { headers: { dpop: 'A'.repeat(10 * 1024) } });
      assertJsonError(viewOf(res), 400, 'invalid_dpop_proof');
    });

    it('a 10 KB Authorization header → 4xx JSON', async () => {
      const res = await postToken(await validForm(client), { headers: { authorization: `Basic ${'A'.repeat(10 * 1024)}` }, dpopFor: client });
      assert.ok(res.status >= 400 && res.status < 500, `expected 4xx, got ${res.status} ${res.text}`);
      assertJsonError(viewOf(res), res.status);
    });

    it('an absolute-form request target (POST http://evil.example/token) → 4xx JSON', async () => {
      const body = Buffer.from((await validForm(client)).toString());
      const head =
        `POST http://evil.example/token HTTP/1.1\r\nHost: evil.example\r\nAccept: text/html\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
        `DPoP: ${await dpopProof(client.dpopKey, 'POST', 'http://evil.example/token')}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
      const res = await rawRequest(server.port, head, [body]);
      assert.ok(res.status >= 400 && res.status < 500, `expected 4xx, got ${res.status} ${res.text || res.socketError}`);
      assertJsonError(rawView(res), res.status);
    });

    it('an absolute-form GET of /health is not served as if it were a path', async () => {
      const res = await rawRequest(server.port, `GET http://evil.example/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`);
      assert.ok(res.status >= 400 && res.status < 500, `expected 4xx, got ${res.status} ${res.text || res.socketError}`);
      assertJsonError(rawView(res), res.status);
    });
  });

  describe('operational endpoints', () => {
    it('/health → 200 JSON', async () => {
      const res = await call('/health');
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/);
      assert.equal(typeof res.json, 'object');
    });

    it('/ready → 200 JSON with postgres and redis up', async () => {
      const res = await call('/ready');
      assert.equal(res.status, 200, res.text);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/);
      assert.equal(res.json.stores?.postgres, 'up', res.text);
      assert.equal(res.json.stores?.redis, 'up', res.text);
    });

    it('/metrics counts issued tokens by grant type, refusals by error, and token endpoint latency; no client id is a label by default', async () => {
      const issuer = await createClient(admin, { name: 'metrics issued' });
      const refused = await createClient(admin, { name: 'metrics refused' });
      await issue(issuer);
      const bad = await postToken(await validForm(refused, { scope: 'not:allowed' }), { dpopFor: refused });
      assert.equal(bad.status, 400);
      const strangerId = `attacker-chosen-${randomUUID()}`;
      const key = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
      await postToken(await validForm({ clientId: strangerId, key, dpopKey: key, record: {} }));

      const res = await call('/metrics');
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain\b/);
      assert.match(res.text, /^sigil_tokens_issued_total\{grant_type="client_credentials"\} [1-9]/m);
      assert.match(res.text, /^sigil_tokens_refused_total\{[^}]*error="invalid_scope"[^}]*\} [1-9]/m);
      assert.match(res.text, /^sigil_tokens_refused_total\{[^}]*error="invalid_client"[^}]*\} [1-9]/m);
      // per-client series only for METRICS_CLIENT_IDS (test/integration/metrics-exposure.test.ts)
      assert.ok(!res.text.includes('client_id='), 'no client id is a label unless an operator listed it');
      assert.ok(!res.text.includes(strangerId), 'an unknown (attacker-chosen) client id must never become a metric label');
      assert.match(res.text, /^sigil_token_endpoint_duration_seconds_bucket\{[^}]*le="[^"]+"[^}]*\} \d+/m);
      assert.match(res.text, /^sigil_token_endpoint_duration_seconds_bucket\{[^}]*le="\+Inf"[^}]*\} [1-9]/m);
      assert.match(res.text, /^sigil_token_endpoint_duration_seconds_count(\{[^}]*\})? [1-9]/m);
    });
  });

  describe('request ids, logs and the token_events record', () => {
    let issuedRid: string;
    let issuedJti: string;
    let refusedRid: string;
    let refusedClient: TestClient;

    it('echoes a sane X-Request-Id and generates one otherwise', async () => {
      const sane = `req-${randomUUID()}`;
      const echoed = await call('/health', { headers: { 'x-request-id': sane } });
      assert.equal(echoed.headers.get('x-request-id'), sane);

      const generated = await call('/health');
      const id = generated.headers.get('x-request-id');
      assert.ok(id && id.length >= 8, `a request id is generated, got ${id}`);
      const again = await call('/health');
      assert.notEqual(again.headers.get('x-request-id'), id, 'each request gets its own id');

      for (const insane of ['has spaces in it', 'x'.repeat(10 * 1024), 'inject"\\}{', '../../etc/passwd\u0001']) {
        const res = await call('/token', { method: 'POST', headers: { 'x-request-id': encodeURI(insane).slice(0, 10 * 1024), accept: 'text/html' }, body: '' });
        const got = res.headers.get('x-request-id');
        assert.ok(got && got !== encodeURI(insane).slice(0, 10 * 1024), `an insane id is replaced, got ${got?.slice(0, 80)}`);
        assert.ok(got.length <= 64, 'the replacement is short');
        assert.ok(res.status >= 400 && res.status < 500, `expected 4xx for an empty token request, got ${res.status}`);
        assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/);
      }
    });

    it('echoes the request id on token responses and logs the issuance with request id, client_id and jti', async () => {
      issuedRid = `issue-${randomUUID()}`;
      const res = await issue(client, { 'x-request-id': issuedRid });
      assert.equal(res.headers.get('x-request-id'), issuedRid);
      issuedJti = jtiOf(res.json.access_token);
      const line = await eventually('the issuance log line', async () =>
        logRecords().find((r) => r.requestId === issuedRid && r.client_id === client.clientId && r.jti === issuedJti));
      assert.equal(line.level, 'info');
    });

    it('logs a refusal with client_id, error and reason', async () => {
      refusedClient = await createClient(admin, { name: 'refused client' });
      refusedRid = `refuse-${randomUUID()}`;
      const res = await postToken(await validForm(refusedClient, { resource: 'https://not-registered.example' }), { headers: { 'x-request-id': refusedRid }, dpopFor: refusedClient });
      assert.equal(res.status, 400);
      assert.equal(res.headers.get('x-request-id'), refusedRid);
      const line = await eventually('the refusal log line', async () => logRecords().find((r) => r.requestId === refusedRid && r.error === 'invalid_target'));
      assert.equal(line.client_id, refusedClient.clientId);
      assert.equal(typeof line.reason, 'string');
      assert.ok(line.reason.length > 0, 'the reason says why');
    });

    it('records issued tokens (jti, client_id, expires_at) and refusals (error, reason) in token_events', async () => {
      const issued = await eventually('the issued row', async () => {
        const rows = await storage.sql<{ client_id: string; expires_at: Date; grant_type: string; request_id: string }>(
          "SELECT client_id, expires_at, grant_type, request_id FROM token_events WHERE outcome = 'issued' AND jti = $1", [issuedJti],
        );
        return rows.length ? rows : undefined;
      });
      assert.equal(issued.length, 1);
      assert.equal(issued[0]!.client_id, client.clientId);
      assert.ok(issued[0]!.expires_at instanceof Date && issued[0]!.expires_at.getTime() > Date.now(), 'expires_at is the token\'s future expiry');
      assert.equal(issued[0]!.grant_type, 'client_credentials');
      assert.equal(issued[0]!.request_id, issuedRid);

      const refused = await eventually('the refused row', async () => {
        const rows = await storage.sql<{ error: string; reason: string | null; request_id: string; jti: string | null }>(
          "SELECT error, reason, request_id, jti FROM token_events WHERE outcome = 'refused' AND client_id = $1", [refusedClient.clientId],
        );
        return rows.length ? rows : undefined;
      });
      assert.equal(refused.length, 1);
      assert.equal(refused[0]!.error, 'invalid_target');
      assert.ok(refused[0]!.reason && refused[0]!.reason.length > 0, 'a refusal records its reason');
      assert.equal(refused[0]!.request_id, refusedRid);
      assert.equal(refused[0]!.jti, null);
    });
  });

  describe('after all of the above', () => {
    it('the server still answers /health and its process is alive', async () => {
      const res = await call('/health');
      assert.equal(res.status, 200);
      assert.equal(server.child.exitCode, null, 'the server process has not exited');
      assert.equal(server.child.signalCode, null, 'the server process was not killed');
      const crashes = logRecords().filter((r) => /unhandled|uncaught/i.test(String(r.msg)));
      assert.deepEqual(crashes, [], 'nothing went unhandled');
    });

    it('no log line contains an assertion, a DPoP proof or an access token', async () => {
      assert.ok(secrets.size > 20, 'the suite did send credentials');
      assert.ok(server.logs.length > 0);
      const all = server.logs.join('\n');
      for (const s of secrets) {
        const signature = s.split('.')[2]!;
        assert.ok(!all.includes(s), `a credential appears in the logs: ${s.slice(0, 40)}...`);
        assert.ok(signature.length < 16 || !all.includes(signature), `a credential's signature appears in the logs: ${s.slice(0, 40)}...`);
      }
    });
  });
});
