// Only the surface a machine-to-machine server needs, seen from outside on a real server: discovery
// advertises exactly what Sigil serves; probing a large candidate list of paths with every method
// finds exactly the expected (method, path) table and nothing else (everything else 404, or 405 with
// Allow); no other spelling of a served path reaches anything; and with Redis cut, every route whose
// answer depends on storage answers 503 while the others answer as before.
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { requestToken } from '../../src/client/oauth-client.js';
import { createTestStorage, REDIS_URL, type TestStorage } from '../support/infra.js';
import { pathVariants } from '../support/path-variants.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin } from '../support/sigil.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { eventually } from '../support/wait.js';

const REQUEST_TIMEOUT_MS = 10_000;
const RECOVERY_TIMEOUT_MS = 20_000;

/**
 * What Sigil is meant to serve, written out independently of src/server/routes.ts: a route added
 * there and not here (or the other way round) fails the listing test. `storage`: refused with 503
 * while a store is unreachable.
 */
const EXPECTED: Array<{ path: string; methods: string[]; storage: boolean }> = [
  { path: '/.well-known/oauth-authorization-server', methods: ['GET', 'HEAD'], storage: false },
  { path: '/.well-known/openid-configuration', methods: ['GET', 'HEAD'], storage: false },
  { path: '/token', methods: ['POST'], storage: true },
  { path: '/introspect', methods: ['POST'], storage: true },
  { path: '/revoke', methods: ['POST'], storage: true },
  { path: '/jwks', methods: ['GET', 'HEAD'], storage: false },
  { path: '/register', methods: ['POST'], storage: true },
  { path: '/register/{client_id}', methods: ['GET', 'PUT', 'DELETE'], storage: true },
  { path: '/status-lists', methods: ['GET', 'HEAD'], storage: true },
  { path: '/status-lists/events', methods: ['GET'], storage: true },
  { path: '/status-lists/{list_id}', methods: ['GET', 'HEAD'], storage: true },
  { path: '/admin/bootstrap', methods: ['POST'], storage: true },
  { path: '/admin/clients', methods: ['GET', 'POST'], storage: true },
  { path: '/admin/clients/{client_id}', methods: ['GET'], storage: true },
  { path: '/admin/clients/{client_id}/revoke', methods: ['POST'], storage: true },
  { path: '/admin/clients/{client_id}/jwks', methods: ['PUT'], storage: true },
  { path: '/admin/tokens/revoke', methods: ['POST'], storage: true },
  { path: '/admin/keys', methods: ['GET'], storage: true },
  { path: '/admin/keys/rotate', methods: ['POST'], storage: true },
  { path: '/admin/registration-tokens', methods: ['GET', 'POST'], storage: true },
  { path: '/admin/registration-tokens/{token_id}', methods: ['GET'], storage: true },
  { path: '/admin/registration-tokens/{token_id}/revoke', methods: ['POST'], storage: true },
  { path: '/admin/trust-domains', methods: ['GET', 'POST'], storage: true },
  { path: '/admin/trust-domains/remove', methods: ['POST'], storage: true },
  { path: '/admin/federations', methods: ['GET', 'POST'], storage: true },
  { path: '/admin/federations/remove', methods: ['POST'], storage: true },
  { path: '/health', methods: ['GET', 'HEAD'], storage: false },
  { path: '/ready', methods: ['GET', 'HEAD'], storage: false },
  { path: '/metrics', methods: ['GET', 'HEAD'], storage: false },
];

/** every field of the discovery document, and nothing else */
const DISCOVERY_FIELDS = [
  'issuer', 'token_endpoint', 'jwks_uri', 'registration_endpoint', 'revocation_endpoint', 'introspection_endpoint',
  'status_list_aggregation_endpoint', 'grant_types_supported', 'response_types_supported',
  'token_endpoint_auth_methods_supported', 'token_endpoint_auth_signing_alg_values_supported',
  'revocation_endpoint_auth_methods_supported', 'revocation_endpoint_auth_signing_alg_values_supported',
  'introspection_endpoint_auth_methods_supported', 'introspection_endpoint_auth_signing_alg_values_supported',
  'dpop_signing_alg_values_supported',
];

/** a method Node's HTTP parser refuses before any route is looked at */
const UNPARSEABLE = 'BREW';
/** PROPFIND: a method Node's HTTP parser knows and Sigil does not */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND', UNPARSEABLE];

/** what oidc-provider 9.13.3 mounts or would mount with its defaults (lib/helpers/defaults.js, initialize_app.js) */
const OIDC_PROVIDER_PATHS = [
  '/auth', '/auth/abc123', '/backchannel', '/device', '/device/auth', '/device/abc123', '/challenge', '/credential',
  '/session/end', '/session/end/confirm', '/session/end/success', '/token/introspection', '/token/revocation', '/request',
  '/reg', '/reg/abc123', '/me', '/interaction/abc123', '/interaction/abc123/abort', '/.well-known/openid-credential-issuer',
];

/** what scanners and confused clients ask for */
const COMMON_PATHS = [
  '/', '/index.html', '/favicon.ico', '/robots.txt', '/.env', '/.git/config', '/server-status', '/debug', '/api', '/login',
  '/authorize', '/oauth/token', '/oauth2/token', '/oauth/authorize', '/oauth2/v1/token', '/connect/token', '/userinfo', '/logout',
  '/keys', '/certs', '/jwks.json', '/.well-known/jwks.json', '/.well-known/webfinger', '/.well-known/oauth-protected-resource',
  '/.well-known/security.txt', '/.well-known/', '/.well-known/openid-configuration/jwks', '/.well-known/oauth-authorization-server/issuer1',
  '/admin', '/admin/', '/admin/x', '/admin/clients/', '/admin/clients/x/y/z', '/admin/clients/x/revoke/x', '/admin/clients/x/delete',
  '/admin/keys/', '/admin/keys/x', '/admin/tokens', '/admin/tokens/x', '/admin/registration-tokens/', '/admin/registration-tokens/x/y',
  '/admin/bootstrap/x', '/register/', '/register/x/y', '/register//x', '/status-lists/', '/status-lists/x/y', '/status-lists/not-a-list',
  '/status-lists/events/x', '/status-lists/1-1/extra', '/token/x', '/token/introspect', '/introspect/x', '/revoke/x', '/jwks/x',
  '/health/x', '/ready/x', '/metrics/x', '/healthz', '/livez', '/readyz', '/version', '/-/health',
];

interface Probe {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

interface Outcome extends Probe {
  method: string;
  path: string;
}

describe('the served surface', () => {
  let storage: TestStorage;
  let redisProxy: TcpProxy;
  let server: ServerProcess;
  let admin: Admin;
  let agent: Agent;
  /** route template → its path with real ids filled in */
  let concrete: Map<string, string>;

  function probe(method: string, path: string): Promise<Probe> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: server.port, method, path, agent, headers: { accept: 'text/html' } }, (res) => {
        const base = { status: res.statusCode ?? 0, headers: res.headers };
        // an event stream never ends: its head is the answer
        if (String(res.headers['content-type']).startsWith('text/event-stream')) {
          res.destroy();
          return resolve({ ...base, text: '', json: undefined });
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ ...base, text, json });
        });
      });
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`${method} ${path}: no answer within ${REQUEST_TIMEOUT_MS} ms (a hang)`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** every (method, path) pair, a few at a time */
  async function probeAll(methods: string[], paths: string[]): Promise<Outcome[]> {
    const pairs = paths.flatMap((path) => methods.map((method) => ({ method, path })));
    const out: Outcome[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: 6 }, async () => {
      while (next < pairs.length) {
        const { method, path } = pairs[next++]!;
        out.push({ method, path, ...(await probe(method, path)) });
      }
    }));
    return out;
  }

  /** a request Sigil's routes saw, not one Node's HTTP parser refused */
  const routed = (o: Outcome) => o.method !== UNPARSEABLE;
  /** a target with a control character (%00, %09) is refused before routing (middleware.ts): 400, never served */
  const controlRefused = (o: Outcome) => o.status === 400 && /%(0[0-9a-f]|1[0-9a-f]|7f)/i.test(o.path) && (o.method === 'HEAD' || /control characters/.test(o.text));
  const served = (o: Outcome) => routed(o) && o.status !== 404 && o.status !== 405 && !controlRefused(o);
  const key = (method: string, path: string) => `${method} ${path}`;
  const describeOutcome = (o: Outcome) => `${o.method} ${o.path} → ${o.status} ${o.text.slice(0, 160)}`;

  function expectedServed(): Set<string> {
    return new Set(EXPECTED.flatMap((r) => r.methods.map((m) => key(m, concrete.get(r.path)!))));
  }

  before(async () => {
    storage = await createTestStorage('surface_routes');
    const redis = new URL(REDIS_URL);
    redisProxy = await startTcpProxy({ host: redis.hostname, port: Number(redis.port || 6379) });
    const redisUrl = new URL(storage.redisUrl);
    redisUrl.hostname = redisProxy.host;
    redisUrl.port = String(redisProxy.port);
    server = await startServer({ env: { DATABASE_URL: storage.databaseUrl, REDIS_URL: redisUrl.toString(), REDIS_PREFIX: storage.redisPrefix } });
    agent = new Agent({ keepAlive: true, maxSockets: 6 });
    admin = await bootstrapAdmin(server.url, server.issuer);
    const client = await createClient(admin, { name: 'surface routes' });
    // a real status list (from a real token), a real client and a real initial access token id
    const token = await requestToken(tokenRequest(server.url, server.issuer, client));
    const claims = JSON.parse(Buffer.from(token.access_token.split('.')[1]!, 'base64url').toString());
    const listPath = new URL(claims.status.status_list.uri as string).pathname;
    const iat = await admin.call('POST', '/admin/registration-tokens', {});
    assert.equal(iat.status, 201, JSON.stringify(iat.body));
    const fill = (path: string) => path
      .replace('{client_id}', client.clientId)
      .replace('{token_id}', iat.body.id as string)
      .replace('/status-lists/{list_id}', listPath);
    concrete = new Map(EXPECTED.map((r) => [r.path, fill(r.path)]));
  });
  after(async () => {
    agent?.destroy();
    await server?.stop();
    await redisProxy?.close();
    await storage?.cleanup();
  });

  describe('discovery', () => {
    it('advertises exactly the fields Sigil supports, nothing from oidc-provider\'s browser flows', async () => {
      const { status, json: md } = await probe('GET', '/.well-known/oauth-authorization-server');
      assert.equal(status, 200);
      assert.deepEqual(Object.keys(md).sort(), [...DISCOVERY_FIELDS].sort(), `unexpected or missing fields: ${JSON.stringify(md)}`);
    });

    it('names Sigil\'s endpoints and what each takes', async () => {
      const { json: md } = await probe('GET', '/.well-known/oauth-authorization-server');
      const issuer = server.issuer;
      assert.equal(md.issuer, issuer);
      assert.equal(md.token_endpoint, `${issuer}/token`);
      assert.equal(md.jwks_uri, `${issuer}/jwks`);
      assert.equal(md.registration_endpoint, `${issuer}/register`);
      assert.equal(md.revocation_endpoint, `${issuer}/revoke`);
      assert.equal(md.introspection_endpoint, `${issuer}/introspect`);
      assert.equal(md.status_list_aggregation_endpoint, `${issuer}/status-lists`);
      assert.deepEqual([...md.grant_types_supported].sort(), ['client_credentials', 'refresh_token', 'urn:ietf:params:oauth:grant-type:token-exchange']);
      assert.deepEqual(md.response_types_supported, [], 'no authorization endpoint, so no response type');
      const algs = ['ES256', 'EdDSA', 'PS256', 'RS256'];
      for (const endpoint of ['token', 'revocation', 'introspection']) {
        assert.deepEqual(md[`${endpoint}_endpoint_auth_methods_supported`], ['private_key_jwt', 'spiffe_jwt'], endpoint);
        assert.deepEqual(md[`${endpoint}_endpoint_auth_signing_alg_values_supported`], algs, endpoint);
      }
      assert.deepEqual(md.dpop_signing_alg_values_supported, algs);
    });

    it('serves the same document at both paths, as cacheable JSON', async () => {
      const a = await probe('GET', '/.well-known/oauth-authorization-server');
      const b = await probe('GET', '/.well-known/openid-configuration');
      assert.deepEqual(a.json, b.json);
      for (const res of [a, b]) {
        assert.match(String(res.headers['content-type']), /^application\/json\b/);
        assert.equal(res.headers['cache-control'], 'public, max-age=3600');
      }
      const head = await probe('HEAD', '/.well-known/openid-configuration');
      assert.equal(head.status, 200);
      assert.equal(head.text, '');
    });

    it('every endpoint it names is served, on its one spelling', async () => {
      const { json: md } = await probe('GET', '/.well-known/oauth-authorization-server');
      const endpoints = Object.entries(md).filter(([k]) => k === 'jwks_uri' || k.endsWith('_endpoint'));
      assert.equal(endpoints.length, 6);
      for (const [field, url] of endpoints) {
        const path = new URL(url as string).pathname;
        const route = EXPECTED.find((r) => r.path === path);
        assert.ok(route, `${field} (${path}) is in the table`);
        const res = await probe(route.methods[0]!, path);
        assert.ok(res.status !== 404 && res.status !== 405, `${field}: ${route.methods[0]} ${path} → ${res.status}`);
      }
    });
  });

  describe('the route table', () => {
    let outcomes: Outcome[];
    let variants: Set<string>;

    before(async () => {
      const servedPaths = [...concrete.values()];
      const theirs = OIDC_PROVIDER_PATHS.flatMap((p) => [p, p.toUpperCase(), `${p}/`]);
      outcomes = await probeAll(METHODS, [...new Set([...servedPaths, ...theirs, ...COMMON_PATHS])]);
      // a variant that reached a route would answer its methods (or 405 for others): those, and the usual ones
      variants = new Set();
      for (const route of EXPECTED) {
        const spellings = pathVariants(concrete.get(route.path)!).filter((v) => !servedPaths.includes(v) && !variants.has(v));
        for (const v of spellings) variants.add(v);
        outcomes.push(...(await probeAll([...new Set([...route.methods, 'GET', 'HEAD', 'POST', 'OPTIONS'])], spellings)));
      }
    });

    it('answers exactly the expected (method, path) table; nothing else is served', () => {
      const got = new Set(outcomes.filter(served).map((o) => key(o.method, o.path)));
      const expected = expectedServed();
      const unexpected = [...got].filter((k) => !expected.has(k));
      const missing = [...expected].filter((k) => !got.has(k));
      assert.deepEqual(unexpected, [], `served but not in the table:\n${outcomes.filter((o) => unexpected.includes(key(o.method, o.path))).map(describeOutcome).join('\n')}`);
      assert.deepEqual(missing, [], `in the table but not served:\n${outcomes.filter((o) => missing.includes(key(o.method, o.path))).map(describeOutcome).join('\n')}`);
      assert.ok(outcomes.length > 3000, `a large probe (${outcomes.length} requests)`);
    });

    it('answers 405 with the path\'s methods in Allow where the path is served with another method, 404 everywhere else', () => {
      const allowOf = new Map(EXPECTED.map((r) => [concrete.get(r.path)!, r.methods.join(', ')]));
      for (const o of outcomes.filter((x) => routed(x) && !served(x) && !controlRefused(x))) {
        const allow = allowOf.get(o.path);
        if (allow) {
          assert.equal(o.status, 405, describeOutcome(o));
          assert.equal(o.headers.allow, allow, describeOutcome(o));
        } else {
          assert.equal(o.status, 404, describeOutcome(o));
          assert.equal(o.headers.allow, undefined, describeOutcome(o));
        }
        if (o.method === 'HEAD') continue;
        assert.match(String(o.headers['content-type']), /^application\/json\b/, describeOutcome(o));
        assert.equal(o.json?.error, 'invalid_request', describeOutcome(o));
      }
    });

    it('no other spelling of a served path reaches anything: every variant is 404 for every method', () => {
      const probed = outcomes.filter((o) => variants.has(o.path) && routed(o));
      assert.ok(probed.length > 2000, `variants were probed (${probed.length})`);
      const reached = probed.filter((o) => o.status !== 404 && !controlRefused(o));
      assert.deepEqual(reached.map(describeOutcome), []);
      for (const spelling of ['/TOKEN', '/token/', '/INTROSPECT', '/token//', '/%74oken', '/./token', '/token;x', '/token#x', '//token', '/Jwks']) {
        assert.ok(variants.has(spelling), `${spelling} was probed`);
      }
    });

    it('never answers 5xx; every routed answer went through Sigil\'s app (it carries a request id)', () => {
      assert.deepEqual(outcomes.filter((o) => o.status >= 500).map(describeOutcome), []);
      assert.deepEqual(outcomes.filter((o) => routed(o) && o.headers['x-request-id'] === undefined).map(describeOutcome), []);
    });

    it('a method the HTTP parser does not know gets one and the same 4xx on every path', () => {
      const answers = outcomes.filter((o) => !routed(o));
      assert.ok(answers.length > 100, `${UNPARSEABLE} was probed (${answers.length})`);
      const statuses = new Set(answers.map((o) => o.status));
      assert.equal(statuses.size, 1, `one answer whatever the path: ${[...statuses].join(', ')}`);
      assert.ok(answers[0]!.status >= 400 && answers[0]!.status < 500, describeOutcome(answers[0]!));
    });
  });

  describe('with Redis unreachable', () => {
    let healthy: Map<string, number>;

    before(async () => {
      const all = EXPECTED.flatMap((r) => r.methods.map((m) => ({ method: m, path: concrete.get(r.path)! })));
      healthy = new Map();
      for (const { method, path } of all) healthy.set(key(method, path), (await probe(method, path)).status);
      redisProxy.cut('refuse');
      await eventually('/ready to report 503', async () => (await probe('GET', '/ready')).status === 503, { timeout: RECOVERY_TIMEOUT_MS });
    });
    after(async () => {
      redisProxy.restore();
      await eventually('/ready to report 200', async () => (await probe('GET', '/ready')).status === 200, { timeout: RECOVERY_TIMEOUT_MS });
    });

    it('every route that depends on storage answers 503 temporarily_unavailable; the others answer as before', async () => {
      for (const route of EXPECTED) {
        const path = concrete.get(route.path)!;
        for (const method of route.methods) {
          const res = await probe(method, path);
          const what = `${method} ${path} → ${res.status} ${res.text.slice(0, 160)}`;
          if (route.storage) {
            assert.equal(res.status, 503, what);
            assert.equal(res.headers['retry-after'], '1', what);
            if (method !== 'HEAD') assert.equal(res.json?.error, 'temporarily_unavailable', what);
          } else if (route.path === '/ready') {
            assert.equal(res.status, 503, what);
          } else {
            assert.equal(res.status, healthy.get(key(method, path)), what);
            assert.ok(res.status < 500, what);
          }
        }
      }
    });

    it('other spellings and unknown paths still answer 404, never 503 or 401', async () => {
      for (const path of ['/TOKEN', '/token/', '/INTROSPECT', '/Revoke', '/register/', '/Admin/clients', '/status-lists/', '/auth']) {
        const res = await probe('POST', path);
        assert.equal(res.status, 404, `POST ${path} → ${res.status} ${res.text.slice(0, 160)}`);
      }
    });
  });
});
