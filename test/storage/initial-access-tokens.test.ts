// Initial access tokens as stored (issue 10, finding 9), on real Postgres and on PGlite: a dead or
// unknown token id is answered without argon2, argon2 runs only when admitted, a verified secret is
// not hashed again, and housekeeping deletes dead tokens. argon2 work is counted, never timed.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ClientStore } from '../../src/clients/client-store.js';
import { createMemoryStore } from '../../src/storage/fast-store.js';
import {
  ClientRegistrations, DEAD_TOKEN_RETENTION_SECONDS, InitialAccessTokens, type SecretCheckAdmission,
} from '../../src/registration/initial-access-tokens.js';
import { migrate } from '../../src/storage/migrate.js';
import { makePgDb, makePgliteDb, sampleClient, type MakeDb, type TestDb } from './helpers.js';

const grant = { scope: ['orders:read'], audiences: ['https://api.example.com/orders'], uses: 1, expiresInSeconds: 3600 };

function contract(backend: string, makeDb: MakeDb) {
  describe(`initial access tokens (${backend})`, () => {
    let t: TestDb;
    let tokens: InitialAccessTokens;
    /** every admission asked for, by token id */
    const asked: string[] = [];
    const admitAll = (id: string): SecretCheckAdmission => {
      asked.push(id);
      return { ok: true };
    };
    const otherSecret = (token: string) => `${token.split('.')[0]}.${randomBytes(32).toString('base64url')}`;

    before(async () => {
      t = await makeDb();
      await migrate(t.db);
      tokens = new InitialAccessTokens(t.db);
    });
    after(async () => {
      await t?.cleanup();
    });

    it('a revoked, expired, used-up or unknown token id is refused without argon2 and without asking for admission', async () => {
      const revoked = await tokens.issue(grant, 'test');
      await tokens.revoke(revoked.record.id, 'test');
      const expired = await tokens.issue(grant, 'test');
      await t.sql("UPDATE initial_access_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", [expired.record.id]);
      const usedUp = await tokens.issue(grant, 'test');
      assert.ok(await tokens.consume(usedUp.record.id));
      const unknown = `sit_${randomBytes(8).toString('hex')}.${randomBytes(32).toString('base64url')}`;

      const checksBefore = tokens.secretChecks;
      asked.length = 0;
      const cases: Array<[string, string]> = [
        [revoked.token, 'revoked'], [otherSecret(revoked.token), 'revoked'],
        [expired.token, 'expired'], [otherSecret(expired.token), 'expired'],
        [usedUp.token, 'used_up'], [otherSecret(usedUp.token), 'used_up'],
        [unknown, 'unknown'], ['sit_nope', 'malformed'],
      ];
      for (let round = 0; round < 5; round++) {
        for (const [token, reason] of cases) {
          const r = await tokens.check(token, admitAll);
          assert.ok(!r.ok);
          assert.equal(r.reason, reason, `${reason}, round ${round}`);
        }
      }
      assert.equal(tokens.secretChecks, checksBefore, 'no argon2 verification ran');
      assert.deepEqual(asked, [], 'no admission was asked for');
    });

    it('a live token: argon2 once per secret tried, and only when admitted; a verified secret is then checked by SHA-256', async () => {
      const live = await tokens.issue({ ...grant, uses: 3 }, 'test');
      const id = live.record.id;
      asked.length = 0;
      const c0 = tokens.secretChecks;

      const wrong = await tokens.check(otherSecret(live.token), admitAll);
      assert.deepEqual(wrong, { ok: false, reason: 'wrong_secret', id });
      assert.equal(tokens.secretChecks, c0 + 1);

      const refused = await tokens.check(live.token, () => ({ ok: false, retryAfterSeconds: 7 }));
      assert.deepEqual(refused, { ok: false, reason: 'throttled', id, retryAfterSeconds: 7 });
      assert.equal(tokens.secretChecks, c0 + 1, 'a refused admission runs no argon2');

      const ok = await tokens.check(live.token, admitAll);
      assert.ok(ok.ok);
      assert.equal(ok.record.id, id);
      assert.equal(tokens.secretChecks, c0 + 2);
      assert.deepEqual(asked, [id, id]);

      // known from now on: the right secret and any wrong one cost a SHA-256, and ask for nothing
      for (let i = 0; i < 5; i++) {
        assert.ok((await tokens.check(live.token, admitAll)).ok);
        const r = await tokens.check(otherSecret(live.token), admitAll);
        assert.ok(!r.ok && r.reason === 'wrong_secret');
      }
      assert.equal(tokens.secretChecks, c0 + 2);
      assert.deepEqual(asked, [id, id]);

      // the state is still read every time: revoked now, refused now
      await tokens.revoke(id, 'test');
      const after = await tokens.check(live.token, admitAll);
      assert.ok(!after.ok && after.reason === 'revoked');
    });

    it('concurrent presentations of the same secret share one argon2 verification (and one admission)', async () => {
      const live = await tokens.issue(grant, 'test');
      asked.length = 0;
      const c0 = tokens.secretChecks;
      const results = await Promise.all(Array.from({ length: 6 }, () => tokens.check(live.token, admitAll)));
      assert.ok(results.every((r) => r.ok));
      assert.equal(tokens.secretChecks, c0 + 1);
      assert.deepEqual(asked, [live.record.id]);
    });

    it('prune deletes tokens expired or revoked more than the retention ago, keeps the others, and unlinks their registrations', async () => {
      assert.equal(DEAD_TOKEN_RETENTION_SECONDS, 7 * 86_400);
      const make = async (sql?: string) => {
        const { record } = await tokens.issue(grant, 'test');
        if (sql) await t.sql(`UPDATE initial_access_tokens SET ${sql} WHERE id = $1`, [record.id]);
        return record.id;
      };
      const live = await make();
      const expiredLongAgo = await make("expires_at = now() - interval '8 days'");
      const expiredRecently = await make("expires_at = now() - interval '6 days'");
      const revokedLongAgo = await make("revoked_at = now() - interval '8 days', revoked_by = 'test'");
      const revokedRecently = await make("revoked_at = now() - interval '1 hour', revoked_by = 'test'");
      // used up long ago and named by the registration of a client that still exists
      const usedUp = await make("uses_left = 0, expires_at = now() - interval '30 days'");
      const clients = new ClientStore(t.db, createMemoryStore());
      const clientId = `pruned-${randomBytes(4).toString('hex')}`;
      assert.ok(await clients.create(sampleClient(clientId)));
      const registrations = new ClientRegistrations(t.db);
      await registrations.create(clientId, usedUp);
      assert.equal(await registrations.initialAccessTokenOf(clientId), usedUp);

      const deleted = await tokens.prune();
      assert.ok(deleted >= 3, `deleted ${deleted}`);
      const left = new Set((await t.sql<{ id: string }>('SELECT id FROM initial_access_tokens')).map((r) => r.id));
      for (const id of [expiredLongAgo, revokedLongAgo, usedUp]) assert.ok(!left.has(id), `${id} pruned`);
      for (const id of [live, expiredRecently, revokedRecently]) assert.ok(left.has(id), `${id} kept`);
      assert.equal(await tokens.read(usedUp), undefined);
      // the client and its registration stay; only the link to the deleted token goes
      assert.ok(await clients.read(clientId));
      assert.equal(await registrations.initialAccessTokenOf(clientId), undefined);
      const [reg] = await t.sql<{ initial_access_token_id: string | null }>('SELECT initial_access_token_id FROM client_registrations WHERE client_id = $1', [clientId]);
      assert.equal(reg!.initial_access_token_id, null);
      // a pruned token is an unknown one: still no argon2
      const c0 = tokens.secretChecks;
      const r = await tokens.check(`sit_${expiredLongAgo}.${randomBytes(32).toString('base64url')}`, admitAll);
      assert.ok(!r.ok && r.reason === 'unknown');
      assert.equal(tokens.secretChecks, c0);
      assert.equal(await tokens.prune(), 0, 'nothing more to prune');
    });
  });
}

contract('postgres', makePgDb);
contract('pglite', makePgliteDb);
