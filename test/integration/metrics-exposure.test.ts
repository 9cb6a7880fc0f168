// Who can read /metrics and what it shows, on two real instances sharing Postgres and Redis:
// A serves it on its main port behind METRICS_TOKEN; B serves it only on its own listener
// (METRICS_PORT, loopback by default, with a token too) and answers 404 for it on the main port.
// B names one client in METRICS_CLIENT_IDS: that client, and no other, gets its own series.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { requestToken } from '../../src/client/oauth-client.js';
import { untilReady } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type TestClient } from '../support/sigil.js';

const get = async (url: string, headers: Record<string, string> = {}) => {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
};

describe('/metrics exposure', () => {
  let storage: TestStorage;
  let a: ServerProcess;
  let b: ServerProcess;
  let metricsPort: number;
  let listed: TestClient;
  let unlisted: TestClient;
  const tokenA = randomBytes(32).toString('hex');
  const tokenB = randomBytes(32).toString('hex');

  before(async () => {
    storage = await createTestStorage('metricsx');
    const env = storageEnv(storage);
    a = await startServer({ env: { ...env, METRICS_TOKEN: tokenA } });
    await untilReady(a.url);
    const admin = await bootstrapAdmin(a.url, a.issuer);
    listed = await createClient(admin, { name: 'listed' });
    unlisted = await createClient(admin, { name: 'unlisted' });
    b = await startServer({
      issuer: a.issuer,
      env: { ...env, METRICS_PORT: '0', METRICS_TOKEN: tokenB, METRICS_CLIENT_IDS: `${listed.clientId},some-client-that-never-calls` },
    });
    await untilReady(b.url);
    // the port the metrics listener bound, as its log line reports it
    assert.ok(b.metricsPort, 'the metrics listener logged its port');
    metricsPort = b.metricsPort;
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await storage?.cleanup();
  });

  describe('METRICS_TOKEN on the main port', () => {
    it('refuses a request without the token: 401 with a Bearer challenge, no figures', async () => {
      const res = await get(`${a.url}/metrics`);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="sigil-metrics"$/);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(JSON.parse(res.text).error, 'invalid_token');
      assert.ok(!res.text.includes('sigil_'), res.text);
    });

    it('refuses a wrong token', async () => {
      const res = await get(`${a.url}/metrics`, { authorization: `Bearer ${tokenB}` });
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    });

    it('answers the right token with Prometheus text; the token never reaches a log line', async () => {
      const res = await get(`${a.url}/metrics`, { authorization: `Bearer ${tokenA}` });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      assert.match(res.text, /^# HELP sigil_tokens_issued_total /m);
      assert.ok(!a.logs.some((l) => l.includes(tokenA)), 'the metrics token is in a log line');
    });
  });

  describe('METRICS_PORT', () => {
    it('the main port answers 404 for /metrics, with or without the token', async () => {
      for (const headers of [{}, { authorization: `Bearer ${tokenB}` }] as Record<string, string>[]) {
        const res = await get(`${b.url}/metrics`, headers);
        assert.equal(res.status, 404);
        assert.equal(JSON.parse(res.text).error, 'invalid_request');
      }
    });

    it('the metrics listener serves /metrics (behind its token) on loopback, and nothing else', async () => {
      assert.ok(b.logs.some((l) => l.includes('"metrics listening"') && l.includes(`"port":${metricsPort}`) && l.includes('"host":"127.0.0.1"')), 'logged where it listens');
      const base = `http://127.0.0.1:${metricsPort}`;
      assert.equal((await get(`${base}/metrics`)).status, 401);
      const ok = await get(`${base}/metrics`, { authorization: `Bearer ${tokenB}` });
      assert.equal(ok.status, 200);
      assert.match(ok.text, /^# HELP sigil_tokens_issued_total /m);
      for (const path of ['/health', '/token', '/.well-known/oauth-authorization-server', '/metrics/', '/status-lists/events']) {
        const res = await get(`${base}${path}`, { authorization: `Bearer ${tokenB}` });
        assert.equal(res.status, 404, path);
        assert.equal(JSON.parse(res.text).error, 'invalid_request');
      }
      const post = await fetch(`${base}/metrics`, { method: 'POST', headers: { authorization: `Bearer ${tokenB}` } });
      assert.equal(post.status, 405);
    });
  });

  describe('METRICS_CLIENT_IDS', () => {
    it('only the listed client gets its own series; everyone is in the aggregate', async () => {
      for (const c of [listed, unlisted]) await requestToken(tokenRequest(b.url, b.issuer, c));
      const res = await get(`http://127.0.0.1:${metricsPort}/metrics`, { authorization: `Bearer ${tokenB}` });
      assert.match(res.text, /^sigil_tokens_issued_total\{grant_type="client_credentials"\} 2$/m);
      assert.match(res.text, new RegExp(`^sigil_client_tokens_issued_total\\{client_id="${listed.clientId}",grant_type="client_credentials"\\} 1$`, 'm'));
      assert.ok(!res.text.includes(unlisted.clientId), 'an unlisted client never becomes a label');
      assert.ok(!res.text.includes('some-client-that-never-calls'), 'a listed client appears only once it is counted');
    });
  });
});
