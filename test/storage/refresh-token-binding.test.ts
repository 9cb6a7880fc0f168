// Refresh tokens bound to a DPoP key or to a client certificate (migration 011) on both SQL backends:
// each stored with exactly one binding, read back as stored.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { migrate } from '../../src/storage/migrate.js';
import { findRefreshToken, insertRefreshToken, newRefreshToken, type RefreshTokenRecord } from '../../src/tokens/refresh-token-store.js';
import { makePgDb, makePgliteDb, type MakeDb, type TestDb } from './helpers.js';

const base = (): Omit<RefreshTokenRecord, 'tokenHash' | 'consumed'> => ({
  familyId: `f-${Math.random()}`, clientId: 'w1', subject: 'u1', subjectClientId: 'c0', subjectJti: 'j0', act: { sub: 'w1' }, scope: 'orders:read',
  audience: 'https://api.example.com', jkt: null, x5tS256: null, familyExpiresAt: Math.floor(Date.now() / 1000) + 3600,
});
const access = { jti: 'at1', expiresAt: Math.floor(Date.now() / 1000) + 300 };

function bindingContract(name: string, makeDb: MakeDb): void {
  describe(`${name}: refresh token binding`, () => {
    let t: TestDb;
    before(async () => {
      t = await makeDb();
      await migrate(t.db);
    });
    after(async () => t?.cleanup());

    it('stores and reads a certificate-bound and a DPoP-bound token', async () => {
      const certBound = newRefreshToken();
      await insertRefreshToken(t.db, certBound, { ...base(), x5tS256: 'thumb-A' }, access);
      const read = await findRefreshToken(t.db, certBound);
      assert.equal(read?.x5tS256, 'thumb-A');
      assert.equal(read?.jkt, null);
      const dpopBound = newRefreshToken();
      await insertRefreshToken(t.db, dpopBound, { ...base(), jkt: 'jkt-1' }, access);
      const again = await findRefreshToken(t.db, dpopBound);
      assert.equal(again?.jkt, 'jkt-1');
      assert.equal(again?.x5tS256, null);
    });

    it('refuses a token bound to both, or to nothing', async () => {
      await assert.rejects(insertRefreshToken(t.db, newRefreshToken(), { ...base(), jkt: 'jkt-1', x5tS256: 'thumb-A' }, access), /refresh_tokens_one_binding/);
      await assert.rejects(insertRefreshToken(t.db, newRefreshToken(), base(), access), /refresh_tokens_one_binding/);
    });
  });
}

bindingContract('Postgres', makePgDb);
bindingContract('PGlite', makePgliteDb);
