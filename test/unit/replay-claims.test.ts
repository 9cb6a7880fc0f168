// The replay adapter's pairing path, without a server: oidc-provider's question about the client
// assertion (ReplayDetection.find through the adapter) claims the assertion's jti and the request's
// DPoP proof's in one round trip; the grant's confirm() gets both answers from it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { oidcAdapterFactory } from '../../src/oidc/adapter.js';
import { ReplayClaims, type ClaimingRequest } from '../../src/oidc/replay-claims.js';
import type { ClaimVerdict, ReplayClaim, ReplayGuard } from '../../src/storage/replay-guard.js';

const CLIENT = 'client-1';
const idOf = (jti: string) => createHash('sha256').update(`${CLIENT}${jti}`).digest('base64url');
const jwt = (payload: Record<string, unknown>) => `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;

interface Call {
  op: 'claim' | 'claimPair' | 'extend';
  ids: string[];
  iats: Array<number | undefined>;
}

/** A guard whose answers the test gives: each call waits for `answer()` unless verdicts are preset. */
function fakeGuard(verdicts: Record<string, ClaimVerdict> = {}, fail?: Error) {
  const calls: Call[] = [];
  const claimed = new Set<string>();
  const verdictOf = (c: ReplayClaim): ClaimVerdict => {
    const verdict = verdicts[c.id] ?? (claimed.has(c.id) ? 'replayed' : 'free');
    claimed.add(c.id);
    return verdict;
  };
  const guard: ReplayGuard = {
    async claim(_clientId, claim) {
      calls.push({ op: 'claim', ids: [claim.id], iats: [claim.iat()] });
      if (fail) throw fail;
      return verdictOf(claim);
    },
    async claimPair(_clientId, first, second) {
      calls.push({ op: 'claimPair', ids: [first.id, second.id], iats: [first.iat(), second.iat()] });
      if (fail) throw fail;
      const a = verdictOf(first);
      return [a, a === 'free' ? verdictOf(second) : 'replayed'];
    },
    async extend(_clientId, id) {
      calls.push({ op: 'extend', ids: [id], iats: [] });
    },
    close() {},
  };
  return { guard, calls };
}

function request(opts: { proof?: Record<string, unknown>; grantType?: string; assertionIat?: number } = {}): ClaimingRequest {
  const dpop = opts.proof ? jwt(opts.proof) : '';
  return {
    get: (header) => (header === 'dpop' ? dpop : ''),
    oidc: {
      route: 'token',
      params: { grant_type: opts.grantType ?? 'client_credentials', client_assertion: jwt({ iat: opts.assertionIat ?? 100 }) },
      client: { clientId: CLIENT, grantTypeAllowed: () => true },
    },
  };
}

const heldForClientCredentials = (req: ClaimingRequest) => req.oidc?.params?.grant_type === 'client_credentials';
const refusal = (error: string, detail: RegExp) => (err: Error & { error?: string; error_detail?: string; error_description?: string }) => err.error === error && detail.test(err.error_detail ?? err.error_description ?? '');

describe('replay claims: pairing the assertion with the DPoP proof', () => {
  it('the assertion question claims the assertion and the unverified proof in one round trip; confirm() of that proof needs no other', async () => {
    const { guard, calls } = fakeGuard();
    const claims = new ReplayClaims(guard, heldForClientCredentials);
    const req = request({ proof: { jti: 'p1', iat: 200 }, assertionIat: 150 });
    assert.equal(claims.assertion(req, idOf('a1')), false, 'held: oidc-provider is told "not seen" at once');
    await claims.confirm(req, CLIENT, { jti: 'p1', iat: 200 });
    assert.deepEqual(calls, [{ op: 'claimPair', ids: [idOf('a1'), idOf('p1')], iats: [150, 200] }]);
  });

  it('held: a replayed assertion is refused by confirm() with oidc-provider\'s words, before the proof', async () => {
    const { guard } = fakeGuard({ [idOf('a1')]: 'replayed' });
    const claims = new ReplayClaims(guard, heldForClientCredentials);
    const req = request({ proof: { jti: 'p1', iat: 200 } });
    assert.equal(claims.assertion(req, idOf('a1')), false);
    await assert.rejects(claims.confirm(req, CLIENT, { jti: 'p1', iat: 200 }), refusal('invalid_client', /^client assertion tokens must only be used once$/));
  });

  it('held: a replayed proof is invalid_dpop_proof', async () => {
    const { guard } = fakeGuard({ [idOf('p1')]: 'replayed' });
    const claims = new ReplayClaims(guard, heldForClientCredentials);
    const req = request({ proof: { jti: 'p1', iat: 200 } });
    claims.assertion(req, idOf('a1'));
    await assert.rejects(claims.confirm(req, CLIENT, { jti: 'p1', iat: 200 }), refusal('invalid_dpop_proof', /Replay detected/));
  });

  it('not held (exchange, refresh): oidc-provider gets the assertion\'s answer, the proof\'s waits for confirm()', async () => {
    const { guard, calls } = fakeGuard({ [idOf('p1')]: 'replayed' });
    const claims = new ReplayClaims(guard, heldForClientCredentials);
    const req = request({ proof: { jti: 'p1', iat: 200 }, grantType: 'refresh_token' });
    const seen = claims.assertion(req, idOf('a1'));
    assert.notEqual(seen, false);
    assert.equal(await seen, false, 'the assertion was free');
    await assert.rejects(claims.confirm(req, CLIENT, { jti: 'p1', iat: 200 }), refusal('invalid_dpop_proof', /Replay detected/));
    assert.equal(calls.length, 1, 'answered by the first round trip');

    const replayed = new ReplayClaims(fakeGuard({ [idOf('a2')]: 'replayed' }).guard, heldForClientCredentials);
    assert.equal(await replayed.assertion(request({ grantType: 'refresh_token' }), idOf('a2')), true, 'seen');
  });

  it('a proof verified with another jti than the one read early is claimed on its own (the early answer is not used for it)', async () => {
    const { guard, calls } = fakeGuard({ [idOf('p1')]: 'replayed' });
    const claims = new ReplayClaims(guard, heldForClientCredentials);
    const req = request({ proof: { jti: 'p1', iat: 200 } });
    claims.assertion(req, idOf('a1'));
    await claims.confirm(req, CLIENT, { jti: 'p2', iat: 210 });
    assert.deepEqual(calls.map((c) => c.op), ['claimPair', 'claim']);
    assert.deepEqual(calls[1], { op: 'claim', ids: [idOf('p2')], iats: [210] });
  });

  it('a proof whose jti is the assertion\'s is not paired with it: claimed after it, it is a replay', async () => {
    const { guard, calls } = fakeGuard();
    const claims = new ReplayClaims(guard, heldForClientCredentials);
    const req = request({ proof: { jti: 'same', iat: 200 } });
    claims.assertion(req, idOf('same'));
    await assert.rejects(claims.confirm(req, CLIENT, { jti: 'same', iat: 200 }), refusal('invalid_dpop_proof', /Replay detected/));
    assert.deepEqual(calls.map((c) => c.op), ['claim', 'claim'], 'no pair of one id with itself');
  });

  it('without a DPoP header only the assertion is claimed', async () => {
    const { guard, calls } = fakeGuard();
    const claims = new ReplayClaims(guard, heldForClientCredentials);
    const req = request();
    claims.assertion(req, idOf('a1'));
    await claims.confirm(req, CLIENT, undefined);
    assert.deepEqual(calls, [{ op: 'claim', ids: [idOf('a1')], iats: [100] }]);
  });

  it('settle(): a held request that never confirmed is told about its replayed assertion; a confirmed or unheld one has nothing to settle', async () => {
    const { guard } = fakeGuard({ [idOf('a1')]: 'replayed' });
    const claims = new ReplayClaims(guard, heldForClientCredentials);
    const refused = request();
    claims.assertion(refused, idOf('a1'));
    await assert.rejects(claims.settle(refused)!, refusal('invalid_client', /only be used once/));
    assert.equal(claims.settle(refused), undefined, 'answered once');

    const confirmed = request();
    claims.assertion(confirmed, idOf('a3'));
    await claims.confirm(confirmed, CLIENT, undefined);
    assert.equal(claims.settle(confirmed), undefined);

    const unheld = request({ grantType: 'refresh_token' });
    await claims.assertion(unheld, idOf('a4'));
    assert.equal(claims.settle(unheld), undefined);
  });

  it('a JWT that predates a loss of replay records is refused as such, assertion (to oidc-provider) and proof (in confirm)', async () => {
    const old = new ReplayClaims(fakeGuard({ [idOf('a1')]: 'predates-loss' }).guard, () => false);
    await assert.rejects(old.assertion(request(), idOf('a1')) as Promise<boolean>, refusal('invalid_client', /before the server lost its replay records/));
    const oldProof = new ReplayClaims(fakeGuard({ [idOf('p1')]: 'predates-loss' }).guard, () => false);
    const req = request({ proof: { jti: 'p1', iat: 1 } });
    assert.equal(await oldProof.assertion(req, idOf('a2')), false);
    await assert.rejects(oldProof.confirm(req, CLIENT, { jti: 'p1', iat: 1 }), refusal('invalid_dpop_proof', /before the server lost its replay records/));
  });

  it('fail closed: a store that cannot answer rejects confirm() with its error, and an answer nobody takes is not an unhandled rejection', async () => {
    const down = Object.assign(new Error('redis is unreachable'), { statusCode: 503 });
    const claims = new ReplayClaims(fakeGuard({}, down).guard, heldForClientCredentials);
    const req = request({ proof: { jti: 'p1', iat: 200 } });
    assert.equal(claims.assertion(req, idOf('a1')), false);
    await assert.rejects(claims.confirm(req, CLIENT, { jti: 'p1', iat: 200 }), down);
    // a second request that fails before confirm(): its rejection is dropped, not unhandled
    let unhandled = false;
    const onUnhandled = () => (unhandled = true);
    process.on('unhandledRejection', onUnhandled);
    claims.assertion(request({ proof: { jti: 'p9', iat: 200 } }), idOf('a9'));
    await new Promise((resolve) => setImmediate(resolve));
    process.off('unhandledRejection', onUnhandled);
    assert.equal(unhandled, false);
  });

  it('through the adapter: find() of the request being handled is the claim; a seen id gets a record oidc-provider accepts; a long life is extended', async () => {
    const { guard, calls } = fakeGuard({ [idOf('seen')]: 'replayed' });
    let current: ClaimingRequest | undefined;
    const claims = new ReplayClaims(guard, () => false);
    const adapter = oidcAdapterFactory({ db: undefined as never, clients: undefined as never, claims, metadataOf: () => ({}), isClientRevoked: () => false, currentRequest: () => current })('ReplayDetection');
    current = request({ proof: { jti: 'p1', iat: 200 } });
    assert.equal(await adapter.find(idOf('a1')), undefined);
    assert.deepEqual(calls.at(-1)?.ids, [idOf('a1'), idOf('p1')], 'paired with the proof of the current request');
    current = request();
    const record = await adapter.find(idOf('seen'));
    assert.equal(record?.kind, 'ReplayDetection');
    assert.equal(record?.jti, idOf('seen'));
    assert.ok((record?.exp as number) > Math.floor(Date.now() / 1000));
    await adapter.upsert(idOf('a1'), { iss: CLIENT }, 300);
    assert.equal(calls.at(-1)?.op, 'claim', 'a claim outlives 300 s already');
    await adapter.upsert(idOf('a1'), { iss: CLIENT }, 3600);
    assert.deepEqual(calls.at(-1), { op: 'extend', ids: [idOf('a1')], iats: [] });
  });
});
