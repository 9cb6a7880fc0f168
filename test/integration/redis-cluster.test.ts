// Sigil on a Redis Cluster (REDIS_CLUSTER=true, the seeds in REDIS_URL): a 3-master cluster started
// by the test from redis-server --cluster-enabled yes, two Sigil instances on it. Tokens are issued,
// a replayed assertion and a replayed proof are refused across instances, pub/sub reaches every
// instance, and a master that loses its data (FLUSHALL; kill -9 and restart empty) is noticed: what
// was used before is refused, fresh requests get tokens.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { requestToken } from '../../src/client/oauth-client.js';
import { createPgDb } from '../../src/storage/db.js';
import { createRedisStore, type RedisStore } from '../../src/storage/fast-store.js';
import { ReplayGenerations } from '../../src/storage/replay-generations.js';
import { parseMarker, REPLAY_SHARDS, shardOf } from '../../src/storage/replay-state.js';
import { assertIssued, assertOAuthError, credentialsOf, postToken, SecretLedger, untilReady, type RawResponse } from '../support/forge.js';
import { createTestStorage, type TestStorage } from '../support/infra.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';
import { startPair, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient } from '../support/sigil.js';
import { silentLog } from '../storage/helpers.js';
import { eventually } from '../support/wait.js';

const ledger = new SecretLedger();
const RECOVERY_MS = 30_000;

describe('Sigil on a 3-master Redis Cluster', () => {
  let cluster: RedisCluster;
  let storage: TestStorage;
  let a: ServerProcess;
  let b: ServerProcess;
  let issuer: string;
  let admin: Admin;
  let client: TestClient;
  const stores: RedisStore[] = [];
  const settings = () => ({ nodes: cluster.masters.map((m) => ({ host: '127.0.0.1', port: m.port })), username: undefined, password: undefined, tls: false });

  before(async () => {
    cluster = await startRedisCluster({ masters: 3 });
    storage = await createTestStorage('redis_cluster');
    const env = { DATABASE_URL: storage.databaseUrl, REDIS_CLUSTER: 'true', REDIS_URL: cluster.seeds, REDIS_PREFIX: storage.redisPrefix };
    ({ a, b, issuer } = await startPair(env));
    admin = await bootstrapAdmin(a.url, issuer);
    client = await createClient(admin, { name: 'on the cluster' });
  });
  after(async () => {
    for (const s of stores) await s.close();
    await a?.stop();
    await b?.stop();
    await cluster?.close();
    await storage?.cleanup();
  });

  const assertion = () => credentialsOf(client, () => issuer, ledger).assertion();
  const proof = () => credentialsOf(client, () => issuer, ledger).proof();
  const post = async (server: ServerProcess, assertionJwt: string, proofJwt: string) =>
    ledger.addResponse(await postToken(`${server.url}/token`, { assertion: assertionJwt, proof: proofJwt }));
  const once503IsOver = (what: string, attempt: () => Promise<RawResponse>) =>
    eventually(what, async () => {
      const res = await attempt();
      return res.status === 503 ? undefined : res;
    }, { timeout: RECOVERY_MS });

  it('both instances issue tokens, and /ready reports every part up', async () => {
    for (const server of [a, b]) {
      assertIssued(await post(server, await assertion(), await proof()));
      const ready = (await (await fetch(`${server.url}/ready`)).json()) as { stores: Record<string, string> };
      assert.deepEqual(ready.stores, { postgres: 'up', redis: 'up', replay: 'up' });
    }
  });

  it('the replay shards spread over the masters, each marker written by the master that holds it', async () => {
    const owners = new Set<number>();
    for (let s = 0; s < REPLAY_SHARDS; s++) {
      const key = `${storage.redisPrefix}{replay-${s}}:generation`;
      const master = await cluster.masterOf(key);
      owners.add(master.port);
      const marker = parseMarker((await cluster.on<string | null>(master, 'GET', key)) ?? undefined);
      assert.ok(marker, `shard ${s} has a marker on its master`);
      const info = await cluster.on<string>(master, 'INFO', 'server');
      assert.equal(marker.runId, /run_id:(\w+)/.exec(info)?.[1]);
    }
    assert.equal(owners.size, 3, 'every master holds shards');
  });

  it('a replayed assertion and a replayed proof are refused across instances', async () => {
    const usedAssertion = await assertion();
    const usedProof = await proof();
    assertIssued(await post(a, usedAssertion, usedProof));
    assertOAuthError(await post(b, usedAssertion, await proof()), 401, 'invalid_client');
    assertOAuthError(await post(b, await assertion(), usedProof), 400, 'invalid_dpop_proof');
    // and concurrent copies of one request, half on each instance: exactly one token
    const shot = { assertion: await assertion(), proof: await proof() };
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => post(i % 2 ? b : a, shot.assertion, shot.proof)));
    assert.equal(answers.filter((r) => r.status === 200).length, 1, answers.map((r) => r.status).join(','));
  });

  it('pub/sub reaches every instance: a message published through one store is heard by another', async () => {
    const [x, y] = [createRedisStore(settings(), storage.redisPrefix, silentLog), createRedisStore(settings(), storage.redisPrefix, silentLog)];
    stores.push(x, y);
    const heard: string[] = [];
    y.subscribe('cluster-test', (m) => heard.push(m));
    await eventually('both stores ready', () => x.isReady() && y.isReady());
    await eventually('a message crosses the cluster', async () => {
      await x.publish('cluster-test', 'hello');
      return heard.includes('hello');
    });
  });

  it('a revocation made on A reaches B', async () => {
    const revoked = await createClient(admin, { name: 'revoked on the cluster' });
    const token = (await requestToken(tokenRequest(b.url, issuer, revoked))).access_token;
    ledger.add(token);
    const res = await admin.call('POST', `/admin/clients/${revoked.clientId}/revoke`, { reason: 'cluster test' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await eventually('B refuses the revoked client', async () => {
      try {
        await requestToken(tokenRequest(b.url, issuer, revoked));
        return false;
      } catch (err) {
        return (err as { status?: number }).status === 401;
      }
    }, { timeout: 5000 });
  });

  async function lossOnTheClientsMaster(lose: (master: RedisCluster['masters'][number]) => Promise<void>): Promise<void> {
    const usedOnA = { assertion: await assertion(), proof: await proof() };
    const usedOnB = { assertion: await assertion(), proof: await proof() };
    assertIssued(await post(a, usedOnA.assertion, usedOnA.proof));
    assertIssued(await post(b, usedOnB.assertion, usedOnB.proof));
    const master = await cluster.masterOf(`${storage.redisPrefix}{replay-${shardOf(client.clientId)}}:generation`);
    await lose(master);
    for (const [server, used] of [[b, usedOnA], [a, usedOnB]] as const) {
      assertOAuthError(await once503IsOver('the used assertion is answered', async () => post(server, used.assertion, await proof())), 401, 'invalid_client');
      assertOAuthError(await once503IsOver('the used proof is answered', async () => post(server, await assertion(), used.proof)), 400, 'invalid_dpop_proof');
    }
    for (const server of [a, b]) {
      await untilReady(server.url, RECOVERY_MS);
      assertIssued(await once503IsOver('a fresh request is answered', async () => post(server, await assertion(), await proof())));
    }
  }

  it('a master FLUSHed: the loss of its shards is noticed, used assertions and proofs are refused on both instances', async () => {
    await lossOnTheClientsMaster(async (master) => {
      await cluster.on(master, 'FLUSHALL');
    });
  });

  it('a master killed and restarted empty: the same', async () => {
    await lossOnTheClientsMaster(async (master) => {
      await master.stop('SIGKILL');
      await master.start();
      await cluster.untilHealthy();
    });
  });

  it('a store of a third process learns the generations the instances started after the losses', async () => {
    const s = createRedisStore(settings(), storage.redisPrefix, silentLog);
    stores.push(s);
    await eventually('ready', () => s.isReady());
    const db = createPgDb(storage.databaseUrl);
    try {
      const generations = new ReplayGenerations(s, db, silentLog);
      await generations.check();
      assert.ok(generations.state.cutoffMs(shardOf(client.clientId)) > 0, 'the client\'s shard carries a cut-off');
    } finally {
      await db.close();
    }
  });

  it('no log line carries an assertion, proof or token', () => {
    assert.deepEqual(ledger.leaks([...a.logs, ...b.logs]), []);
    for (const server of [a, b]) assert.ok(server.logs.some((l) => l.includes('replay records were lost')), 'the loss is logged');
  });
});
