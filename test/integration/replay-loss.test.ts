// Replay protection survives the loss of Redis's data. Two Sigil processes share Postgres and a
// dedicated redis-server without persistence. Assertions and proofs are used, then Redis loses
// everything (kill -9 and restart; FLUSHDB under running instances; FLUSHDB while every instance is
// down). Afterwards, on both instances: a used assertion (with a fresh proof) and a used proof (with
// a fresh assertion) are refused, a used admin-API proof is refused, and a client that makes a
// fresh assertion and proof for every request sees only 503s (retry) and then tokens, never a 401.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { dpopProof, requestToken, TokenError } from '../../src/client/oauth-client.js';
import { assertIssued, assertOAuthError, credentialsOf, postToken, SecretLedger, untilReady, type RawResponse } from '../support/forge.js';
import { createTestStorage, type TestStorage } from '../support/infra.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { startPair, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient } from '../support/sigil.js';
import { eventually } from '../support/wait.js';

const ledger = new SecretLedger();
/** how long a loss may take to be noticed and its quarantine to pass, on a loaded machine */
const RECOVERY_MS = 30_000;

describe('replay protection survives the loss of Redis\'s data (two instances, dedicated redis-server)', () => {
  let redis: RedisServer;
  let storage: TestStorage;
  let a: ServerProcess;
  let b: ServerProcess;
  let issuer: string;
  let admin: Admin;
  let client: TestClient;
  let wellBehaved: TestClient;

  before(async () => {
    redis = await startRedisServer();
    storage = await createTestStorage('replay_loss');
    const env = { DATABASE_URL: storage.databaseUrl, REDIS_URL: redis.url, REDIS_PREFIX: storage.redisPrefix };
    ({ a, b, issuer } = await startPair(env));
    admin = await bootstrapAdmin(a.url, issuer);
    client = await createClient(admin, { name: 'replayed' });
    wellBehaved = await createClient(admin, { name: 'well-behaved' });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await redis?.close();
    await storage?.cleanup();
  });

  const fresh = () => credentialsOf(client, () => issuer, ledger);
  const freshAssertion = () => fresh().assertion();
  const freshProof = () => fresh().proof();
  const post = async (server: ServerProcess, assertion: string, proof: string) => ledger.addResponse(await postToken(`${server.url}/token`, { assertion, proof }));

  interface Used {
    assertion: string;
    proof: string;
    admin: { token: string; proof: string };
  }

  /** a token request and an admin call made on `server`: one-time material, used once */
  async function useOn(server: ServerProcess): Promise<Used> {
    const assertion = await freshAssertion();
    const proof = await freshProof();
    assertIssued(await post(server, assertion, proof));
    const adminToken = (await requestToken({
      tokenEndpoint: `${server.url}/token`, htu: `${issuer}/token`, issuer, clientId: 'sigil-admin', clientKey: admin.key, dpopKey: admin.key, resource: `${issuer}/admin`, scope: 'sigil:admin',
    })).access_token;
    const adminProof = await dpopProof(admin.key, 'GET', `${issuer}/admin/clients`, { accessToken: adminToken });
    ledger.add(adminToken, adminProof);
    const res = await adminCall(server, adminToken, adminProof);
    assert.equal(res.status, 200, `the admin call works before the loss: ${res.status} ${res.text}`);
    return { assertion, proof, admin: { token: adminToken, proof: adminProof } };
  }

  async function adminCall(server: ServerProcess, token: string, proof: string): Promise<RawResponse> {
    const res = await fetch(`${server.url}/admin/clients`, { headers: { authorization: `DPoP ${token}`, dpop: proof } });
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return { status: res.status, headers: res.headers, text, body };
  }

  /** The answer once the instance serves again: 503 while Redis is away or the loss is being handled. */
  async function once503IsOver(what: string, attempt: () => Promise<RawResponse>): Promise<RawResponse> {
    const odd: string[] = [];
    const res = await eventually(what, async () => {
      const r = await attempt();
      if (r.status !== 503) return r;
      // every 503 is the RFC 6749 JSON error and says when to retry
      if (r.body?.error !== 'temporarily_unavailable' || r.headers.get('retry-after') !== '1') odd.push(`${r.text} (Retry-After: ${r.headers.get('retry-after')})`);
      return undefined;
    }, { timeout: RECOVERY_MS });
    assert.deepEqual(odd, [], `${what}: 503s without temporarily_unavailable or Retry-After`);
    return res;
  }

  /** A client doing everything right, all along, on both instances: fresh assertion and proof per request. */
  function wellBehavedTraffic() {
    const seen: string[] = [];
    let stopped = false;
    const run = (async () => {
      for (let i = 0; !stopped; i++) {
        const server = i % 2 ? b : a;
        try {
          const token = await requestToken(tokenRequest(server.url, issuer, wellBehaved));
          ledger.add(token.access_token);
          seen.push('200');
        } catch (err) {
          if (!(err instanceof TokenError)) throw err;
          seen.push(`${err.status} ${err.body.error} (${server === a ? 'A' : 'B'}: ${err.body.error_description})`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    return {
      /** stop once a token was issued after `afterIndex`, and return every answer */
      async stop(): Promise<string[]> {
        await eventually('the well-behaved client gets tokens again', async () => seen.slice(-4).filter((s) => s === '200').length >= 2, { timeout: RECOVERY_MS });
        stopped = true;
        await run;
        return seen;
      },
    };
  }

  /** (a)–(d) on both instances, each replaying what was used on the other */
  async function assertReplaysRefused(usedOnA: Used, usedOnB: Used): Promise<void> {
    for (const [server, used] of [[b, usedOnA], [a, usedOnB]] as const) {
      const name = server === a ? 'A' : 'B';
      const assertionReplay = await once503IsOver(`${name} answers the used assertion`, async () => post(server, used.assertion, await freshProof()));
      assertOAuthError(assertionReplay, 401, 'invalid_client');
      const proofReplay = await once503IsOver(`${name} answers the used proof`, async () => post(server, await freshAssertion(), used.proof));
      assertOAuthError(proofReplay, 400, 'invalid_dpop_proof');
      const adminReplay = await once503IsOver(`${name} answers the used admin proof`, () => adminCall(server, used.admin.token, used.admin.proof));
      assert.equal(adminReplay.status, 401, `the used admin proof on ${name}: ${adminReplay.status} ${adminReplay.text}`);
      assert.equal((adminReplay.body as { error?: string })?.error, 'invalid_dpop_proof');
    }
  }

  async function assertWellBehavedNeverRefused(answers: string[]): Promise<void> {
    const refused = answers.filter((s) => s !== '200' && !s.startsWith('503 temporarily_unavailable'));
    assert.deepEqual(refused, [], `a well-behaved client is never refused, only asked to retry: ${answers.join(', ')}`);
    assert.ok(answers.some((s) => s.startsWith('503')), `the loss did interrupt service (503s): ${answers.join(', ')}`);
    for (const server of [a, b]) {
      await untilReady(server.url, RECOVERY_MS);
      assert.equal(typeof (await requestToken(tokenRequest(server.url, issuer, wellBehaved))).access_token, 'string');
    }
  }

  it('kill -9 and restart (no persistence): used assertions and proofs are refused on both instances; fresh ones get tokens', async () => {
    const usedOnA = await useOn(a);
    const usedOnB = await useOn(b);
    const traffic = wellBehavedTraffic();
    await redis.stop('SIGKILL');
    await redis.start();
    await assertReplaysRefused(usedOnA, usedOnB);
    await assertWellBehavedNeverRefused(await traffic.stop());
  });

  it('FLUSHDB under running instances (no reconnection): the same', async () => {
    const usedOnA = await useOn(a);
    const usedOnB = await useOn(b);
    const traffic = wellBehavedTraffic();
    const raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    try {
      await raw.flushdb();
    } finally {
      raw.disconnect();
    }
    await assertReplaysRefused(usedOnA, usedOnB);
    await assertWellBehavedNeverRefused(await traffic.stop());
  });

  it('FLUSHDB while every instance is down (markers missing at start; Postgres knows generations existed): the same', async () => {
    const usedOnA = await useOn(a);
    const usedOnB = await useOn(b);
    await Promise.all([a.stop(), b.stop()]);
    const raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    try {
      await raw.flushdb();
    } finally {
      raw.disconnect();
    }
    await Promise.all([a.restart(), b.restart()]);
    await assertReplaysRefused(usedOnA, usedOnB);
    for (const server of [a, b]) {
      await untilReady(server.url, RECOVERY_MS);
      assert.equal(typeof (await requestToken(tokenRequest(server.url, issuer, wellBehaved))).access_token, 'string');
    }
  });

  it('each loss was logged with its cut-off, and no log line carries an assertion, proof or token', () => {
    for (const server of [a, b]) assert.ok(server.logs.some((l) => l.includes('replay records were lost')), 'the loss is logged');
    assert.deepEqual(ledger.leaks([...a.logs, ...b.logs]), []);
  });
});
