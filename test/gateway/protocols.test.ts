// verify-server against a real Sigil, asked as Traefik ForwardAuth and Envoy ext_authz ask (neither
// is packaged here: the requests are made exactly as their documentation describes them), from an
// untrusted address, for its own /health /ready /metrics, and started as the CLI command.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dpopProof, requestToken } from '../../src/client/oauth-client.js';
import { parseGatewayConfig } from '../../src/gateway/config.js';
import { startVerifyService, type VerifyService } from '../../src/gateway/service.js';
import { send } from '../support/echo-upstream.js';
import { decodePayload, untilReady } from '../support/forge.js';
import { createTestStorage, type TestStorage } from '../support/infra.js';
import { freePort, ROOT, startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type TestClient } from '../support/sigil.js';
import { eventually } from '../support/wait.js';

const HOST = 'api.example.test';
const ORDERS = 'https://api.example.test/orders';
const CONFIG = { routes: [{ prefix: '/orders', audience: ORDERS, scopes: ['orders:read'] }] };

describe('verify-server protocols', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let client: TestClient;
  const services: VerifyService[] = [];
  let service: VerifyService;
  const start = async (config: unknown = CONFIG, extra: Partial<Parameters<typeof startVerifyService>[0]> = {}) => {
    const s = await startVerifyService({ config: parseGatewayConfig(JSON.stringify(config)), issuer: server.issuer, port: 0, host: '127.0.0.1', ...extra });
    services.push(s);
    return s;
  };
  const token = async () => (await requestToken(tokenRequest(server.url, server.issuer, client, { resource: ORDERS, scope: 'orders:read' }))).access_token;
  const credentials = async (method: string, url: string) => {
    const t = await token();
    return { t, headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(client.dpopKey, method, url, { accessToken: t }) } };
  };

  before(async () => {
    storage = await createTestStorage('gwproto');
    server = await startServer({ reachableIssuer: true, env: { DATABASE_URL: storage.databaseUrl, REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix } });
    await untilReady(server.url);
    client = await createClient(await bootstrapAdmin(server.url, server.issuer), { audiences: [ORDERS] });
    service = await start();
  });
  after(async () => {
    for (const s of services) await s.close();
    await server?.stop();
    await storage?.cleanup();
  });

  it('Traefik ForwardAuth: a GET to the service with X-Forwarded-Method/-Proto/-Host/-Uri and the original headers', async () => {
    const { t, headers } = await credentials('PUT', `https://${HOST}/orders/42?x=1`);
    // what Traefik sends: GET to `address`, the client's headers, and the X-Forwarded-* it sets itself
    const res = await fetch(`${service.url}/verify`, {
      headers: { ...headers, 'x-forwarded-method': 'PUT', 'x-forwarded-proto': 'https', 'x-forwarded-host': HOST, 'x-forwarded-uri': '/orders/42?x=1', 'x-forwarded-for': '198.51.100.7' },
    });
    assert.equal(res.status, 200, await res.text());
    assert.equal(res.headers.get('x-sigil-client-id'), client.clientId);
    assert.equal(res.headers.get('x-sigil-jti'), decodePayload(t).jti);
    // refusals carry the challenge Traefik passes back
    const none = await fetch(`${service.url}/verify`, { headers: { 'x-forwarded-method': 'GET', 'x-forwarded-proto': 'https', 'x-forwarded-host': HOST, 'x-forwarded-uri': '/orders/1' } });
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate')!, /^DPoP algs="/);
  });

  it('Envoy ext_authz HTTP service: the original method, path and Host; scheme from X-Forwarded-Proto, http when absent', async () => {
    const https = await credentials('POST', `https://${HOST}/orders/7`);
    // what Envoy sends (path_prefix unset): the original method and path, :authority as Host, the allowed_headers
    const ok = await send(service.port, { method: 'POST', path: '/orders/7', host: HOST, headers: { ...https.headers, 'x-forwarded-proto': 'https', 'content-length': '0' } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers['x-sigil-sub'], client.clientId);
    const plain = await credentials('GET', `http://${HOST}/orders/7`);
    assert.equal((await send(service.port, { path: '/orders/7', host: HOST, headers: plain.headers })).status, 200, 'http without X-Forwarded-Proto');
    // the same proof against the https URL would be for another URL
    const other = await credentials('GET', `https://${HOST}/orders/7`);
    const refused = await send(service.port, { path: '/orders/7', host: HOST, headers: other.headers });
    assert.equal(refused.status, 401);
    assert.match(String(refused.headers['www-authenticate']), /htu does not match/);
  });

  it('Envoy asking about an API path that is also one of the service\'s own (/metrics) gets a decision, not the metrics', async () => {
    const catchAll = await start({ routes: [{ prefix: '/', audience: ORDERS }] });
    for (const own of ['/metrics', '/health', '/ready']) {
      const r = await send(catchAll.port, { path: own, host: HOST });
      assert.equal(r.status, 401, `${own}: ${r.status}`);
      const { headers } = await credentials('GET', `http://${HOST}${own}`);
      const allowed = await send(catchAll.port, { path: own, host: HOST, headers });
      assert.equal(allowed.status, 200, allowed.text);
      assert.equal(allowed.headers['x-sigil-client-id'], client.clientId);
    }
    // a probe from outside the gateways still reads them
    const hosted = await start({ routes: [{ host: HOST, prefix: '/', audience: ORDERS }] });
    assert.equal((await send(hosted.port, { path: '/health', host: `127.0.0.1:${hosted.port}` })).status, 200);
    assert.equal((await send(hosted.port, { path: '/health', host: HOST })).status, 401);
  });

  it('nginx auth_request headers win over X-Forwarded-*; a repeated or malformed description is refused', async () => {
    const { headers } = await credentials('GET', `https://${HOST}/orders/1`);
    const ok = await send(service.port, { path: '/verify', host: 'verify.internal', headers: { ...headers, 'x-original-method': 'GET', 'x-original-url': `https://${HOST}/orders/1`, 'x-forwarded-uri': '/elsewhere', 'x-forwarded-method': 'DELETE' } });
    assert.equal(ok.status, 200, ok.text);
    const twice = await send(service.port, { path: '/verify', host: 'verify.internal', headers: { ...headers, 'x-original-method': 'GET', 'x-original-url': [`https://${HOST}/orders/1`, `https://${HOST}/orders/2`] } });
    assert.equal(twice.status, 403);
    assert.equal(JSON.parse(twice.text).error, 'bad_request');
    for (const url of ['/orders/1', 'ftp://x/orders/1', `javascript://${HOST}/orders/1`, 'https://1.2.3.999/orders/1', 'https://[::1]:99999/orders/1', 'https://a b/orders/1']) {
      const r = await send(service.port, { path: '/verify', host: 'v', headers: { ...headers, 'x-original-method': 'GET', 'x-original-url': url } });
      assert.equal(r.status, 403, url);
      assert.equal(JSON.parse(r.text).error, 'bad_request', url);
    }
  });

  it('a request from an address outside trusted_proxies is refused, whatever it carries', async () => {
    const strict = await start({ ...CONFIG, trusted_proxies: ['192.0.2.1/32'] });
    const { headers } = await credentials('GET', `https://${HOST}/orders/1`);
    const r = await send(strict.port, { path: '/verify', host: 'v', headers: { ...headers, 'x-original-method': 'GET', 'x-original-url': `https://${HOST}/orders/1` } });
    assert.equal(r.status, 403);
    assert.equal(JSON.parse(r.text).error, 'untrusted_source');
    assert.equal(r.headers['x-sigil-sub'], undefined);
    assert.equal((await fetch(`${strict.url}/health`)).status, 200, 'health is for anyone');
  });

  it('/health, /ready (issuer keys loaded; 503 when they cannot be), /metrics (decisions, latency, oldest status list)', async () => {
    assert.deepEqual(await (await fetch(`${service.url}/health`)).json(), { status: 'ok' });
    const ready = await fetch(`${service.url}/ready`);
    assert.equal(ready.status, 200, await ready.clone().text());
    const cut = await start(CONFIG, { fetch: () => Promise.reject(new Error('unreachable')) });
    const notReady = await fetch(`${cut.url}/ready`);
    assert.equal(notReady.status, 503);
    assert.match(JSON.stringify(await notReady.json()), /issuer keys unavailable/);
    const metrics = await (await fetch(`${service.url}/metrics`)).text();
    assert.match(metrics, /^sigil_verify_decisions_total\{outcome="allowed",reason="ok"\} [1-9]/m);
    assert.match(metrics, /^sigil_verify_decisions_total\{outcome="refused",reason="missing_token"\} [1-9]/m);
    assert.match(metrics, /^sigil_verify_duration_seconds_count [1-9]/m);
    const age = /^sigil_verify_status_list_oldest_age_seconds (\S+)$/m.exec(metrics);
    assert.ok(age && Number(age[1]) > 0, 'a status list was fetched, and has an age');
  });

  it('`sigil verify-server --config FILE`: serves on VERIFY_PORT until SIGTERM; a bad config file exits 2', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sigil-verify-'));
    const run = (args: string[], env: Record<string, string>) => {
      const child = spawn(process.execPath, [path.join(ROOT, 'bin/sigil.js'), ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
      const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      return { child, exit, stderr: () => stderr };
    };
    try {
      await writeFile(path.join(dir, 'bad.json'), JSON.stringify({ routes: [{ prefix: '/orders', audience: ORDERS, method: ['GET'] }] }));
      const bad = run(['verify-server', '--config', path.join(dir, 'bad.json')], { SIGIL_ISSUER: server.issuer });
      assert.equal(await bad.exit, 2);
      assert.match(bad.stderr(), /routes\[0\]: unknown key "method"/);
      await writeFile(path.join(dir, 'ok.json'), JSON.stringify(CONFIG));
      const noIssuer = run(['verify-server', '--config', path.join(dir, 'ok.json')], {});
      assert.equal(await noIssuer.exit, 2);
      assert.match(noIssuer.stderr(), /SIGIL_ISSUER is required/);

      const port = await freePort();
      const ok = run(['verify-server', '--config', path.join(dir, 'ok.json')], { SIGIL_ISSUER: server.issuer, VERIFY_PORT: String(port) });
      await eventually('verify-server to answer /health', async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok, { timeout: 20_000 });
      const { headers } = await credentials('GET', `https://${HOST}/orders/3`);
      const r = await fetch(`http://127.0.0.1:${port}/verify`, { headers: { ...headers, 'x-original-method': 'GET', 'x-original-url': `https://${HOST}/orders/3` } });
      assert.equal(r.status, 200, await r.text());
      assert.equal(r.headers.get('x-sigil-client-id'), client.clientId);
      ok.child.kill('SIGTERM');
      assert.equal(await ok.exit, 0, ok.stderr());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
