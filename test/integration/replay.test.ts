// The replay acceptance test: concurrent copies of one token request, spread over two server
// processes that share storage, yield exactly one token. With Redis (SET NX) and without it
// (Postgres INSERT ... ON CONFLICT).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  assertIssued, assertOAuthError, decodePayload, forgeAssertion, forgeProof, postToken, SecretLedger, untilReady, type RawResponse,
} from '../support/forge.js';
import { shardOf } from '../../src/storage/replay-state.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin } from '../support/sigil.js';
import { eventually } from '../support/wait.js';
import { requestToken } from '../../src/client/oauth-client.js';

const COPIES = 20;
const ROUNDS = 3;
const ledger = new SecretLedger();
const allServers: ServerProcess[] = [];

/** oidc-provider's ReplayDetection id for (iss, jti): sha256(iss + jti), base64url */
function replayId(iss: string, jti: string): string {
  return createHash('sha256').update(`${iss}${jti}`).digest('base64url');
}

interface Pair {
  storage: TestStorage;
  a: ServerProcess;
  b: ServerProcess;
  admin: Admin;
}

/** two processes on one storage, behind one ISSUER (the first one's URL) */
async function startPair(label: string, withRedis: boolean): Promise<Pair> {
  const storage = await createTestStorage(label);
  const env: Record<string, string> = withRedis
    ? storageEnv(storage)
    : { DATABASE_URL: storage.databaseUrl };
  const a = await startServer({ env });
  allServers.push(a);
  await untilReady(a.url);
  const admin = await bootstrapAdmin(a.url, a.issuer);
  const b = await startServer({ issuer: a.issuer, env });
  allServers.push(b);
  await untilReady(b.url);
  return { storage, a, b, admin };
}

interface Shot {
  assertion: string;
  proof: string;
}

/** Fire every request at once, alternating between the two processes. */
async function fire(pair: Pair, shots: Shot[]): Promise<RawResponse[]> {
  for (const s of shots) ledger.add(s.assertion, s.proof);
  const targets = [pair.a, pair.b];
  const responses = await Promise.all(shots.map((s, i) => postToken(`${targets[i % 2]!.url}/token`, { assertion: s.assertion, proof: s.proof })));
  for (const r of responses) ledger.addResponse(r);
  return responses;
}

/** exactly one token; every other answer a proper refusal with one of `errors` */
function exactlyOne(responses: RawResponse[], errors: Array<[number, string]>): string {
  const ok = responses.filter((r) => r.status === 200);
  const summary = responses.map((r) => `${r.status} ${r.body?.error ?? ''}`).join(', ');
  assert.equal(ok.length, 1, `exactly one of ${responses.length} concurrent copies may get a token; got: ${summary}`);
  for (const r of responses) {
    if (r.status === 200) continue;
    assertOAuthError(r, errors.map(([s]) => s), errors.map(([, e]) => e));
    assert.ok(errors.some(([s, e]) => s === r.status && e === r.body.error), `unexpected refusal ${r.status} ${r.body.error}`);
  }
  return assertIssued(ok[0]!);
}

async function issuedCount(storage: TestStorage, clientId: string): Promise<number> {
  const rows = await storage.sql<{ n: string }>(`SELECT count(*)::text AS n FROM token_events WHERE client_id = $1 AND outcome = 'issued'`, [clientId]);
  return Number(rows[0]!.n);
}

/**
 * The issuance log agrees: `expected` tokens, and no more once every buffered event is written. The
 * log is a FIFO buffer each process writes in batches: once a marker token issued by each process
 * after the burst is in Postgres, everything that process buffered before it is too.
 */
async function assertIssuedInLog(pair: Pair, clientId: string, expected: number): Promise<void> {
  const marker = await createClient(pair.admin, { name: 'flush marker' });
  for (const server of [pair.a, pair.b]) {
    const { jti } = decodePayload((await requestToken(tokenRequest(server.url, server.issuer, marker))).access_token);
    await eventually(`the marker token of ${server.url} in token_events`, async () => (await pair.storage.sql('SELECT 1 FROM token_events WHERE jti = $1', [jti])).length > 0);
  }
  assert.equal(await issuedCount(pair.storage, clientId), expected, 'token_events must record exactly the tokens the responses carried');
}

function scenarios(label: string, withRedis: boolean, seen: (pair: Pair, clientId: string, id: string) => Promise<boolean>) {
  describe(label, () => {
    let pair: Pair;
    before(async () => {
      pair = await startPair(withRedis ? 'replay_redis' : 'replay_pg', withRedis);
    });
    after(async () => {
      await pair?.a.stop();
      await pair?.b.stop();
      await pair?.storage.cleanup();
    });

    const issuer = () => pair.a.issuer;
    const htu = () => `${pair.a.issuer}/token`;

    it('control: both processes issue tokens under the shared ISSUER', async () => {
      const client = await createClient(pair.admin, { name: 'warm-up' });
      for (const target of [pair.a, pair.b]) {
        const assertion = await forgeAssertion(client.key, client.clientId, issuer());
        const proof = await forgeProof(client.dpopKey, 'POST', htu());
        ledger.add(assertion, proof);
        const token = assertIssued(ledger.addResponse(await postToken(`${target.url}/token`, { assertion, proof })));
        assert.equal(decodePayload(token).iss, issuer());
      }
    });

    it(`of ${COPIES} concurrent identical requests (one assertion, one proof) exactly one gets a token`, async () => {
      const client = await createClient(pair.admin, { name: 'identical' });
      for (let round = 0; round < ROUNDS; round++) {
        const shot = { assertion: await forgeAssertion(client.key, client.clientId, issuer()), proof: await forgeProof(client.dpopKey, 'POST', htu()) };
        const responses = await fire(pair, Array.from({ length: COPIES }, () => shot));
        exactlyOne(responses, [[401, 'invalid_client'], [400, 'invalid_dpop_proof']]);
        const jti = decodePayload(shot.assertion).jti as string;
        assert.ok(await seen(pair, client.clientId, replayId(client.clientId, jti)), 'the assertion jti is recorded in the shared replay store');
      }
      await assertIssuedInLog(pair, client.clientId, ROUNDS);
    });

    it(`of ${COPIES} concurrent requests sharing one assertion, each with its own proof, exactly one gets a token`, async () => {
      const client = await createClient(pair.admin, { name: 'one assertion' });
      for (let round = 0; round < ROUNDS; round++) {
        const assertion = await forgeAssertion(client.key, client.clientId, issuer());
        const shots = await Promise.all(Array.from({ length: COPIES }, async () => ({ assertion, proof: await forgeProof(client.dpopKey, 'POST', htu()) })));
        const responses = await fire(pair, shots);
        exactlyOne(responses, [[401, 'invalid_client']]);
      }
      await assertIssuedInLog(pair, client.clientId, ROUNDS);
    });

    it(`of ${COPIES} concurrent requests with different assertions sharing one proof, exactly one gets a token`, async () => {
      const client = await createClient(pair.admin, { name: 'one proof' });
      for (let round = 0; round < ROUNDS; round++) {
        const proof = await forgeProof(client.dpopKey, 'POST', htu());
        const shots = await Promise.all(Array.from({ length: COPIES }, async () => ({ assertion: await forgeAssertion(client.key, client.clientId, issuer()), proof })));
        const responses = await fire(pair, shots);
        const token = exactlyOne(responses, [[400, 'invalid_dpop_proof']]);
        assert.equal(decodePayload(token).client_id, client.clientId);
        const jti = decodePayload(proof).jti as string;
        assert.ok(await seen(pair, client.clientId, replayId(client.clientId, jti)), 'the proof jti is recorded in the shared replay store');
      }
      await assertIssuedInLog(pair, client.clientId, ROUNDS);
    });

    it('a replayed assertion does no issuance work: 30 replays take no status-list index', async () => {
      const client = await createClient(pair.admin, { name: 'replayed' });
      const idxOf = (token: string) => decodePayload(token).status.status_list.idx as number;
      const issue = async (assertion: string) => {
        const proof = await forgeProof(client.dpopKey, 'POST', htu());
        ledger.add(assertion, proof);
        return ledger.addResponse(await postToken(`${pair.a.url}/token`, { assertion, proof }));
      };
      const used = await forgeAssertion(client.key, client.clientId, issuer());
      const first = assertIssued(await issue(used));
      for (let i = 0; i < 30; i++) assertOAuthError(await issue(used), 401, 'invalid_client');
      const next = assertIssued(await issue(await forgeAssertion(client.key, client.clientId, issuer())));
      // indices come from this instance's reserved block, one per token: the replays took none
      assert.equal(idxOf(next), idxOf(first) + 1, 'the 30 refused replays must not have allocated status-list indices');
    });
  });
}

describe('replay across two server processes', () => {
  scenarios('with Redis (SET NX)', true, async (pair, clientId, id) => (await pair.storage.redis.exists(`${pair.storage.redisPrefix}{replay-${shardOf(clientId)}}:id:${id}`)) === 1);
  scenarios('without REDIS_URL (Postgres INSERT ... ON CONFLICT)', false, async (pair, _clientId, id) => {
    const rows = await pair.storage.sql('SELECT id FROM replay_records WHERE id = $1 AND expires_at > now()', [id]);
    return rows.length === 1;
  });

  it('no server log line contains an assertion, proof or token of this file', async () => {
    assert.ok(ledger.size > 100, 'the ledger should have recorded the credentials sent');
    assert.equal(allServers.length, 4);
    for (const s of allServers) {
      assert.ok(s.logs.length > 0);
      assert.deepEqual(ledger.leaks(s.logs), [], `leaks in the logs of ${s.url}`);
    }
  });
});
