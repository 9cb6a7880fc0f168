// The end-to-end cases of issue 12, run through a real gateway (nginx auth_request, Caddy
// forward_auth) in front of the echo upstream, with a real Sigil issuing the tokens. Each gateway
// test file calls gatewaySuite with a function that starts its gateway.
//
// Three verify-server replicas, each behind its own gateway so a test knows which one it asks:
//   a, b   share their proof replay records in Redis (a proof used through a is refused through b)
//   c      the issuer's status lists cut off
//   d      a clock two hours ahead (a clock moved back and forth would poison its own caches)
//   e      no status-list change stream, a clock the test moves forward
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { decodeProtectedHeader, generateKeyPair } from 'jose';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { dpopProof, keyPairFromPrivateJwk, requestToken } from '../../src/client/oauth-client.js';
import { parseGatewayConfig } from '../../src/gateway/config.js';
import { startVerifyService, type VerifyService } from '../../src/gateway/service.js';
import { createRedisReplayStore } from '../../src/verifier/index.js';
import { send, startEchoUpstream, type EchoUpstream, type Sent } from '../support/echo-upstream.js';
import { b64url, decodePayload, epoch, forgeProof, signJws, unsignedJwt, untilReady } from '../support/forge.js';
import { createTestStorage, type TestStorage } from '../support/infra.js';
import type { Gateway } from '../support/nginx.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { adminWithKey, createClient, tokenRequest, type Admin, type TestClient } from '../support/sigil.js';
import { jsonOf, sigil, tempDir, type CliOptions } from '../cli/harness.js';
import { eventually } from '../support/wait.js';

export type StartGateway = (opts: { upstreamPort: number; verifierPorts: number[] }) => Promise<Gateway>;

const HOST = 'api.example.test';
const ORDERS = 'https://api.example.test/orders';
const STOCK = 'https://api.example.test/stock';
const OTHER = 'https://api.example.test/other';
const ALGS = 'algs="ES256 EdDSA PS256 RS256"';
const publicUrl = (path: string) => `http://${HOST}${path}`;
const ath = (token: string) => createHash('sha256').update(token).digest('base64url');
const invalid = (code: string, d: string) => `DPoP error="${code}", error_description="${d}", ${ALGS}`;

export const CONFIG = {
  routes: [
    { host: HOST, prefix: '/orders', audience: ORDERS, scopes: ['orders:read'], methods: ['GET', 'POST'] },
    { prefix: '/orders/admin', audience: ORDERS, scopes: ['orders:write'] },
    { prefix: '/stock', audience: STOCK },
  ],
};

export function gatewaySuite(name: string, startGateway: StartGateway, opts: { skip?: string | false } = {}) {
  describe(`${name} in front of verify-server`, { skip: opts.skip }, () => {
    let storage: TestStorage;
    let server: ServerProcess;
    let admin: Admin;
    /** the admin's `sigil` CLI: keys rotate, tokens revoke, clients revoke are run as an operator would */
    let cli: CliOptions;
    let work: Awaited<ReturnType<typeof tempDir>>;
    let client: TestClient;
    let upstream: EchoUpstream;
    const services: VerifyService[] = [];
    const gateways: Gateway[] = [];
    let gwA: Gateway;
    let gwB: Gateway;
    let gwC: Gateway;
    let gwD: Gateway;
    let gwE: Gateway;
    let eAhead = 0;
    /** what every replica asked the issuer */
    const asked: string[] = [];

    const token = async (c: TestClient = client, resource = ORDERS, scope = 'orders:read') =>
      (await requestToken(tokenRequest(server.url, server.issuer, c, { resource, scope }))).access_token;
    /** a call through a gateway: a DPoP token with a fresh proof for exactly this request unless told otherwise */
    const call = async (gw: Gateway, path: string, t: string | undefined, o: { method?: string; proof?: string; scheme?: string; key?: TestClient; headers?: Record<string, string> } = {}): Promise<Sent> => {
      const method = o.method ?? 'GET';
      const headers: Record<string, string> = { ...o.headers };
      if (t !== undefined) {
        headers.authorization = `${o.scheme ?? 'DPoP'} ${t}`;
        if ((o.scheme ?? 'DPoP') === 'DPoP') headers.dpop = o.proof ?? await dpopProof((o.key ?? client).dpopKey, method, publicUrl(path), { accessToken: t });
      }
      return send(gw.port, { method, path, host: HOST, headers });
    };
    const refused = (r: Sent, status: number, wwwAuthenticate?: string) => {
      assert.equal(r.status, status, `${r.status} ${r.text}`);
      assert.equal(r.echoed, undefined, 'the upstream was not reached');
      if (wwwAuthenticate !== undefined) assert.equal(r.headers['www-authenticate'], wwwAuthenticate);
    };

    before(async () => {
      storage = await createTestStorage(`gw${name}`);
      server = await startServer({ reachableIssuer: true,
        env: { DATABASE_URL: storage.databaseUrl, REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix, JWKS_MAX_AGE: '2', STATUS_LIST_TTL: '60' },
      });
      await untilReady(server.url);
      work = await tempDir('gateway');
      cli = { url: server.url, cwd: work.dir, keysDir: path.join(work.dir, 'keys') };
      jsonOf(await sigil(['init', '--json'], cli));
      const adminJwk = JSON.parse(await readFile(path.join(cli.keysDir!, 'admin.private.jwk.json'), 'utf8'));
      admin = adminWithKey(server.url, server.issuer, await keyPairFromPrivateJwk(adminJwk));
      client = await createClient(admin, { scope: 'orders:read orders:write', audiences: [ORDERS, OTHER] });
      upstream = await startEchoUpstream();
      const config = parseGatewayConfig(JSON.stringify(CONFIG));
      const recording = (input: string | URL, init?: RequestInit) => {
        asked.push(String(input));
        return fetch(input, init);
      };
      // the replay records' generation marker written with a clock 10 s behind: the replicas then
      // find it in place, and do not treat their first seconds as a possible loss of records
      const prefix = `${storage.redisPrefix}gateway:`;
      await (await createRedisReplayStore({ redis: storage.redisUrl, prefix, now: () => Date.now() - 10_000 })).close();
      for (let i = 0; i < 2; i++) {
        services.push(await startVerifyService({ config, issuer: server.issuer, port: 0, host: '127.0.0.1', redisUrl: storage.redisUrl, redisPrefix: prefix, fetch: recording }));
      }
      services.push(await startVerifyService({
        config, issuer: server.issuer, port: 0, host: '127.0.0.1',
        fetch: (input, init) => (String(input).includes('/status-lists/') ? Promise.reject(new Error('unreachable')) : recording(input, init)),
      }));
      services.push(await startVerifyService({ config, issuer: server.issuer, port: 0, host: '127.0.0.1', verifierOverrides: { now: () => Date.now() + 2 * 3600_000 }, fetch: recording }));
      services.push(await startVerifyService({
        config, issuer: server.issuer, port: 0, host: '127.0.0.1', fetch: recording,
        // proofs may be as old as the jump past the list's ttl (60 s) for this replica
        verifierOverrides: { now: () => Date.now() + eAhead, status: { events: false }, dpop: { maxAgeSeconds: 300 } },
      }));
      for (const s of services) gateways.push(await startGateway({ upstreamPort: upstream.port, verifierPorts: [s.port] }));
      [gwA, gwB, gwC, gwD, gwE] = gateways as [Gateway, Gateway, Gateway, Gateway, Gateway];
    });

    after(async () => {
      for (const g of gateways) await g.stop();
      for (const s of services) await s.close();
      await upstream?.close();
      await server?.stop();
      await storage?.cleanup();
      await work?.remove();
    });

    it('a good call: the upstream sees the identity headers, and none a client sent itself', async () => {
      const t = await token();
      const r = await call(gwA, '/orders/42?page=2', t, { headers: { 'x-sigil-sub': 'admin', 'x-sigil-act': '{"sub":"forged"}', 'x-sigil-client-id': 'forged' } });
      assert.equal(r.status, 200, `${r.text}\n${await gwA.logs()}`);
      const h = r.echoed!.headers;
      const claims = decodePayload(t);
      assert.equal(h['x-sigil-client-id'], client.clientId);
      assert.equal(h['x-sigil-sub'], claims.sub);
      assert.equal(h['x-sigil-scope'], 'orders:read');
      assert.equal(h['x-sigil-jti'], claims.jti);
      assert.equal(h['x-sigil-act'], undefined, 'no act for a token that was not exchanged');
      assert.equal(r.echoed!.url, '/orders/42?page=2');
      // a POST with a proof for POST
      assert.equal((await call(gwB, '/orders', t, { method: 'POST' })).status, 200);
    });

    it('no token: 401 with the bare DPoP challenge', async () => {
      refused(await call(gwA, '/orders/42', undefined), 401, `DPoP ${ALGS}`);
    });

    it('a DPoP-bound token sent as Bearer: 401 invalid_token', async () => {
      refused(await call(gwA, '/orders/42', await token(), { scheme: 'Bearer' }), 401, invalid('invalid_token', 'a DPoP-bound access token and a DPoP proof are required'));
    });

    it('a proof for another URL or another method: 401 invalid_dpop_proof', async () => {
      const t = await token();
      refused(await call(gwA, '/orders/42', t, { proof: await dpopProof(client.dpopKey, 'GET', publicUrl('/orders/43'), { accessToken: t }) }), 401,
        invalid('invalid_dpop_proof', 'DPoP proof htu does not match the request URL'));
      refused(await call(gwA, '/orders/42', t, { method: 'POST', proof: await dpopProof(client.dpopKey, 'GET', publicUrl('/orders/42'), { accessToken: t }) }), 401,
        invalid('invalid_dpop_proof', 'DPoP proof htm does not match the request method'));
      // the gateway's own address is not the public URL
      refused(await call(gwA, '/orders/42', t, { proof: await dpopProof(client.dpopKey, 'GET', `http://127.0.0.1:${gwA.port}/orders/42`, { accessToken: t }) }), 401,
        invalid('invalid_dpop_proof', 'DPoP proof htu does not match the request URL'));
    });

    it('a replayed proof: refused by the same replica and by another sharing Redis', async () => {
      const t = await token();
      const proof = await dpopProof(client.dpopKey, 'GET', publicUrl('/orders/42'), { accessToken: t });
      assert.equal((await call(gwA, '/orders/42', t, { proof })).status, 200);
      const replayed = invalid('invalid_dpop_proof', 'the DPoP proof has been used before');
      refused(await call(gwA, '/orders/42', t, { proof }), 401, replayed);
      const other = await dpopProof(client.dpopKey, 'GET', publicUrl('/orders/7'), { accessToken: t });
      assert.equal((await call(gwB, '/orders/7', t, { proof: other })).status, 200);
      refused(await call(gwA, '/orders/7', t, { proof: other }), 401, replayed);
    });

    it('a stale proof and a wrong ath: 401 invalid_dpop_proof', async () => {
      const t = await token();
      const url = publicUrl('/orders/42');
      refused(await call(gwA, '/orders/42', t, { proof: await forgeProof(client.dpopKey, 'GET', url, { claims: { ath: ath(t), iat: epoch() - 120 } }) }), 401,
        invalid('invalid_dpop_proof', 'DPoP proof iat is too old'));
      refused(await call(gwA, '/orders/42', t, { proof: await forgeProof(client.dpopKey, 'GET', url, { claims: { ath: ath(`${t}x`) } }) }), 401,
        invalid('invalid_dpop_proof', 'DPoP proof ath does not match the access token'));
    });

    it('another audience, a forged signature, alg none: 401 invalid_token', async () => {
      refused(await call(gwA, '/orders/42', await token(client, OTHER)), 401, invalid('invalid_token', 'the access token is for another audience'));
      const t = await token();
      const [h, p, s] = t.split('.') as [string, string, string];
      const forged = `${h}.${b64url({ ...decodePayload(t), scope: 'orders:read orders:write' })}.${s}`;
      refused(await call(gwA, '/orders/42', forged), 401, invalid('invalid_token', 'the access token signature is invalid'));
      const { privateKey } = await generateKeyPair('ES256');
      refused(await call(gwA, '/orders/42', await signJws({ ...decodeProtectedHeader(t) }, decodePayload(t), privateKey)), 401, invalid('invalid_token', 'the access token signature is invalid'));
      refused(await call(gwA, '/orders/42', `${b64url({ alg: 'none', typ: 'at+jwt' })}.${p}.${s}`), 401, invalid('invalid_token', 'the access token alg is not allowed'));
      refused(await call(gwA, '/orders/42', unsignedJwt({ alg: 'none', typ: 'at+jwt' }, decodePayload(t))), 401, invalid('invalid_token', 'the access token is not a JWT'));
    });

    it('an expired token: 401 invalid_token', async () => {
      refused(await call(gwD, '/orders/42', await token()), 401, invalid('invalid_token', 'the access token has expired'));
    });

    it('a scope the route requires and the token lacks: 403 with its challenge', async () => {
      refused(await call(gwA, '/orders/admin/1', await token()), 403,
        'DPoP error="insufficient_scope", error_description="the access token lacks the scope orders:write", scope="orders:write", ' + ALGS);
      assert.equal((await call(gwA, '/orders/admin/1', await token(client, ORDERS, 'orders:write'))).status, 200);
    });

    it('no route, a method the route does not allow, and path tricks: refused before the upstream', async () => {
      const t = await token();
      refused(await call(gwA, '/ordersX', t), 403);
      refused(await call(gwA, '/elsewhere', t), 403);
      refused(await call(gwA, '/orders/42', t, { method: 'DELETE' }), 403);
      for (const path of ['/orders/../elsewhere', '/orders/%2e%2e/elsewhere', '/orders/%2E%2e/x', '/orders//42', '//orders/42', '/orders;x/42', '/orders/42;jsessionid=1', '/orders/%2f42', '/stock/..%2forders']) {
        const r = await call(gwA, path, t);
        assert.ok(r.status === 403 || r.status === 400, `${path}: ${r.status} ${r.text}`);
        assert.equal(r.echoed, undefined, `${path} reached the upstream`);
      }
      // a percent-encoded unreserved character is the same path
      assert.equal((await call(gwA, '/%6frders/42', t)).status, 200);
    });

    it('a token signed by a new key after `sigil keys rotate` is accepted, nothing restarted', async () => {
      assert.equal((await call(gwA, '/orders/1', await token())).status, 200);
      const before = decodeProtectedHeader(await token()).kid;
      jsonOf(await sigil(['keys', 'rotate', '--json'], cli));
      const fresh = await eventually('a token signed by the new key', async () => {
        const t = await token();
        return decodeProtectedHeader(t).kid !== before && t;
      }, { timeout: 30_000 });
      const r = await call(gwA, '/orders/1', fresh);
      assert.equal(r.status, 200, r.text);
      assert.equal((await call(gwB, '/orders/1', fresh)).status, 200);
    });

    it('a token and a client revoked with `sigil ... revoke` are refused within 1 s of the command returning, without asking /introspect', async () => {
      const t = await token();
      assert.equal((await call(gwA, '/orders/1', t)).status, 200);
      const refusedWithin = async (what: string, fn: () => Promise<unknown>, tok: string, key: TestClient) => {
        await fn();
        // from the revoke call returning (as the issue measures it) to the first refusal at the gateway
        const at = Date.now();
        const r = await eventually(what, async () => {
          const res = await call(gwA, '/orders/1', tok, { key });
          return res.status === 401 && res;
        }, { timeout: 5_000 });
        const ms = Date.now() - at;
        assert.ok(ms < 1000, `${what} after ${ms} ms`);
        assert.equal(r.echoed, undefined);
        return r;
      };
      const r = await refusedWithin('the revoked token refused', async () => {
        jsonOf(await sigil(['tokens', 'revoke', `--reason=gateway test`, '--json', '--', decodePayload(t).jti], cli));
      }, t, client);
      assert.equal(r.headers['www-authenticate'], invalid('invalid_token', 'the access token has been revoked'));

      const victim = await createClient(admin, { name: 'to be revoked', audiences: [ORDERS] });
      const vt = await token(victim);
      assert.equal((await call(gwA, '/orders/1', vt, { key: victim })).status, 200);
      await refusedWithin('the revoked client refused', async () => {
        jsonOf(await sigil(['clients', 'revoke', victim.clientId, '--reason=gateway test', '--json'], cli));
      }, vt, victim);
      assert.deepEqual(asked.filter((u) => u.endsWith('/introspect')), []);
    });

    it('without the change stream, a revoked token is refused once the list\'s ttl has passed', async () => {
      const t = await token();
      assert.equal((await call(gwE, '/orders/5', t)).status, 200);
      jsonOf(await sigil(['tokens', 'revoke', '--json', '--', decodePayload(t).jti], cli));
      assert.equal((await call(gwE, '/orders/5', t)).status, 200, 'within the ttl the cached list is used');
      eAhead = 61_000;
      refused(await call(gwE, '/orders/5', t), 401, invalid('invalid_token', 'the access token has been revoked'));
      assert.deepEqual(asked.filter((u) => u.endsWith('/introspect')), []);
    });

    it('the status list unreachable: the verifier fails closed, 503 with Retry-After', async () => {
      const r = await call(gwC, '/orders/1', await token());
      assert.equal(r.status, 503, `${r.status} ${r.headers['www-authenticate']}\n${await gwC.logs()}`);
      assert.equal(r.echoed, undefined);
      assert.equal(r.headers['retry-after'], '5');
    });

    it('an exchanged token: its act chain reaches the upstream', async () => {
      const orders = await createClient(admin, {
        name: 'orders service', scope: 'orders:read', audiences: [STOCK], serves: [ORDERS],
        grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
      });
      const exchanged = (await requestToken(tokenRequest(server.url, server.issuer, orders, {
        grantType: 'urn:ietf:params:oauth:grant-type:token-exchange', resource: STOCK,
        extra: { subject_token: await token(), subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' },
      }))).access_token;
      const r = await call(gwA, '/stock/9', exchanged, { key: orders, headers: { 'x-sigil-act': '{"sub":"forged"}' } });
      assert.equal(r.status, 200, r.text);
      const h = r.echoed!.headers;
      assert.equal(h['x-sigil-sub'], client.clientId, 'the original subject');
      assert.equal(h['x-sigil-client-id'], orders.clientId);
      assert.deepEqual(JSON.parse(h['x-sigil-act'] as string), decodePayload(exchanged).act);
      assert.equal(JSON.parse(h['x-sigil-act'] as string).sub, orders.clientId);
    });
  });
}
