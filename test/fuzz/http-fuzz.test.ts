// Property-based fuzzing of every public endpoint of a real Sigil (real Postgres and Redis) over raw
// sockets. Properties, for every request: an answer (no reset, no close without one, none later than
// the deadline), never a 5xx, and every refusal an RFC 6749 §5.2 JSON error; after the run the process
// is alive, logged no error, and a valid token request still works.
//
// Seeded and bounded in time: SIGIL_FUZZ_SECONDS (default 20), SIGIL_FUZZ_SEED (default random,
// printed), SIGIL_FUZZ_PATH (replays the counterexample a failure printed, with its seed).
// A long run: SIGIL_FUZZ_SECONDS=900 node --test --test-timeout=1200000 dist/test/fuzz/http-fuzz.test.js
import assert from 'node:assert/strict';
import { generateKeyPairSync, KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { requestToken, type SigningKeyPair } from '../../src/client/oauth-client.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { rawExchange, type RawExchange } from '../support/raw-http.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, type Admin, type TestClient } from '../support/sigil.js';
import { renderRequest, requestRecipe, TOKEN_EXCHANGE, ACCESS_TOKEN_TYPE, type Material, type RenderedRequest } from './recipes.js';

const SECONDS = Number(process.env.SIGIL_FUZZ_SECONDS ?? 20);
const SEED = process.env.SIGIL_FUZZ_SEED !== undefined ? Number(process.env.SIGIL_FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
const PATH = process.env.SIGIL_FUZZ_PATH;
/** requests sent at once: concurrency finds what one at a time cannot */
const BATCH = Number(process.env.SIGIL_FUZZ_BATCH ?? 8);
/** no answer by then is a hang (the server's own timeouts are longer: it must answer well before) */
const DEADLINE_MS = 15_000;
const ORDERS = 'https://api.example.com/orders';
/** how long the fuzzer listens to an event stream before it moves on */
const STREAM_WAIT_MS = 250;

const keyObject = (pair: SigningKeyPair) => KeyObject.from(pair.privateKey);
const publicJwkOf = (pair: SigningKeyPair) => {
  const { kid: _k, alg: _a, use: _u, key_ops: _o, ...jwk } = pair.publicJwk;
  return jwk as Record<string, string>;
};

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

/** CPU seconds a process has used (user + system), from /proc/<pid>/stat */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Why this exchange breaks a property, or undefined. */
function violation(req: RenderedRequest, ex: RawExchange): string | undefined {
  // an event stream sends its headers with its first event (status-lists.ts): silence is no hang
  if (req.stream && ex.end === 'timeout' && ex.responses.length === req.expect - 1) return undefined;
  if (ex.end !== 'answered') return `no answer: ${ex.end}${ex.error ? ` (${ex.error})` : ''} after ${ex.responses.length} of ${req.expect} responses`;
  for (const [i, res] of ex.responses.entries()) {
    const what = `response ${i + 1}: ${res.status} ${res.headers['content-type'] ?? ''} ${res.text.slice(0, 200)}`;
    if (res.status >= 500) return `a 5xx: ${what}`;
    if (res.status === 0) return `not an HTTP response: ${what}`;
    if (res.status >= 400 && !req.head[i]) {
      if (!/^application\/json\b/i.test(res.headers['content-type'] ?? '') || typeof res.json?.error !== 'string') return `not an RFC 6749 §5.2 JSON error: ${what}`;
    }
  }
  return undefined;
}

describe('HTTP fuzzing (fast-check)', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;
  let client: TestClient;
  let material: Material;
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

  async function validToken(): Promise<void> {
    const t = await requestToken({
      tokenEndpoint: `${server.url}/token`, htu: `${server.issuer}/token`, issuer: server.issuer, clientId: client.clientId, clientKey: client.key, dpopKey: client.dpopKey,
    });
    assert.equal(typeof t.access_token, 'string');
  }

  before(async () => {
    storage = await createTestStorage('fuzz');
    server = await startServer({ env: { ...storageEnv(storage), LOG_LEVEL: 'info' } });
    admin = await bootstrapAdmin(server.url, server.issuer);
    client = await createClient(admin, {
      name: 'fuzz', scope: 'orders:read', audiences: [ORDERS], serves: [ORDERS], grant_types: ['client_credentials', TOKEN_EXCHANGE, 'refresh_token'], can_introspect: true,
    });
    const tokenRequest = { tokenEndpoint: `${server.url}/token`, htu: `${server.issuer}/token`, issuer: server.issuer, clientId: client.clientId, clientKey: client.key, dpopKey: client.dpopKey };
    const access = await requestToken(tokenRequest);
    const exchanged = await requestToken({ ...tokenRequest, grantType: TOKEN_EXCHANGE, extra: { subject_token: access.access_token, subject_token_type: ACCESS_TOKEN_TYPE, audience: ORDERS } });
    const iat = await admin.call('POST', '/admin/registration-tokens', { scope: 'orders:read', audiences: [ORDERS], uses: 1000, expires_in: 86_400 });
    assert.equal(iat.status, 201, JSON.stringify(iat.body));
    const registered = await fetch(`${server.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${iat.body.token}` },
      body: JSON.stringify({ client_name: 'fuzz partner', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [client.key.publicJwk] } }),
    }).then((r) => r.json() as Promise<{ client_id: string; registration_access_token: string }>);
    const status = JSON.parse(Buffer.from(access.access_token.split('.')[1]!, 'base64url').toString()).status.status_list.uri as string;

    // the admin token is renewed well before it expires, for runs of any length
    let adminToken = { value: '', at: 0 };
    const renewAdminToken = async () => {
      const t = await requestToken({ ...tokenRequest, clientId: 'sigil-admin', clientKey: admin.key, dpopKey: admin.key, resource: `${server.issuer}/admin`, scope: 'sigil:admin' });
      adminToken = { value: t.access_token, at: Date.now() };
    };
    await renewAdminToken();
    const renewal = setInterval(() => void renewAdminToken().catch(() => {}), 60_000);
    renewal.unref();

    material = {
      issuer: server.issuer,
      clientId: client.clientId,
      clientKey: keyObject(client.key),
      clientKid: client.key.kid ?? '',
      dpopKey: keyObject(client.dpopKey),
      dpopJwk: publicJwkOf(client.dpopKey),
      publicJwk: client.key.publicJwk as Record<string, string>,
      accessToken: access.access_token,
      refreshToken: String(exchanged.refresh_token),
      initialAccessToken: iat.body.token,
      registeredClientId: registered.client_id,
      registrationAccessToken: registered.registration_access_token,
      statusListId: status.slice(status.lastIndexOf('/') + 1),
      admin: { key: keyObject(admin.key), jwk: publicJwkOf(admin.key), token: () => adminToken.value },
    };
  });

  after(async () => {
    await server?.stop();
    await storage?.cleanup();
  });

  it(`every endpoint answers hostile requests with a 4xx JSON error, never a 5xx, a reset or a hang (${SECONDS} s, seed ${SEED})`, async (t) => {
    const pid = server.child.pid!;
    const rssBefore = rssKiB(pid);
    const cpuBefore = cpuSeconds(pid);
    const ownCpuBefore = process.cpuUsage();
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssKiB(pid))), 1000);
    const counts = { exchanges: 0, requests: 0, fiveHundreds: 0, resets: 0, unanswered: 0, streams: 0, byStatus: new Map<number, number>() };
    const started = Date.now();

    const property = fc.asyncProperty(fc.array(requestRecipe, { minLength: 1, maxLength: BATCH }), async (batch) => {
      const results = await Promise.all(batch.map(async (recipe) => {
        const req = renderRequest(recipe, material, otherKey);
        const begun = Date.now();
        const ex = await rawExchange(server.port, req.chunks, {
          expect: req.expect, head: req.head, halfClose: req.halfClose, deadlineMs: req.stream ? STREAM_WAIT_MS : DEADLINE_MS, sequential: req.sequential,
        });
        if (process.env.SIGIL_FUZZ_VERBOSE && Date.now() - begun > Number(process.env.SIGIL_FUZZ_VERBOSE)) process.stdout.write(`slow (${Date.now() - begun} ms, ${ex.end}): ${req.summary}\n`);
        return { req, ex };
      }));
      for (const { req, ex } of results) {
        counts.exchanges++;
        counts.requests += req.expect;
        if (ex.end === 'reset') counts.resets++;
        if (req.stream) counts.streams++;
        else if (ex.end !== 'answered') counts.unanswered++;
        for (const res of ex.responses) {
          counts.byStatus.set(res.status, (counts.byStatus.get(res.status) ?? 0) + 1);
          if (res.status >= 500) counts.fiveHundreds++;
        }
      }
      for (const { req, ex } of results) {
        const problem = violation(req, ex);
        if (problem) throw new Error(`${problem}\n  request: ${req.summary}\n  bytes: ${JSON.stringify(Buffer.concat(req.chunks).toString('latin1').slice(0, 600))}`);
      }
    });
    const result = await fc.check(property, {
      seed: SEED,
      ...(PATH ? { path: PATH } : {}),
      numRuns: PATH ? 1 : Number.MAX_SAFE_INTEGER,
      plugins: [fc.interruptAfterTimeLimit(SECONDS * 1000)],
    });

    clearInterval(sampler);
    const seconds = (Date.now() - started) / 1000;
    const rssAfter = rssKiB(pid);
    const serverCpu = cpuSeconds(pid) - cpuBefore;
    const ownCpu = process.cpuUsage(ownCpuBefore);
    const statuses = [...counts.byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${s}:${n}`).join(' ');
    const report = `fuzz: seed ${SEED}, ${result.numRuns} runs, ${counts.exchanges} exchanges, ${counts.requests} requests in ${seconds.toFixed(1)} s `
      + `(${(counts.requests / seconds).toFixed(0)}/s, ${counts.streams} event streams); 5xx ${counts.fiveHundreds}, resets ${counts.resets}, unanswered ${counts.unanswered}; `
      + `server RSS ${(rssBefore / 1024).toFixed(1)} → ${(rssAfter / 1024).toFixed(1)} MiB (peak ${(rssPeak / 1024).toFixed(1)}); `
      + `CPU s: server ${serverCpu.toFixed(1)}, fuzzer ${((ownCpu.user + ownCpu.system) / 1e6).toFixed(1)}; statuses ${statuses}`;
    t.diagnostic(report);
    process.stdout.write(`${report}\n`);
    if (result.failed) {
      assert.fail(`a property failed (reproduce with SIGIL_FUZZ_SEED=${SEED} SIGIL_FUZZ_PATH=${result.counterexamplePath}):\n`
        + `${result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance)}`);
    }
    assert.ok(counts.exchanges > 0, 'the fuzzer sent requests');
  });

  it('afterwards the process is alive, logged no error, and a valid token request works', async () => {
    assert.equal(server.child.exitCode, null, 'the server process is alive');
    assert.equal(server.child.signalCode, null);
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);
    await validToken();
    const errors = server.logs.filter((l) => /"level":"(error|fatal)"|unhandled|uncaught/i.test(l));
    assert.deepEqual(errors.map((l) => l.slice(0, 500)), [], 'no error was logged');
  });
});
