// Revocation across instances: two real Sigil processes on one Postgres and one Redis, sharing one
// ISSUER, behave as one server. A client revoked, a token revoked or a key replaced on one instance
// is honoured by the other within one second (CONTRACT.md), every admin action is audited, and a
// revocation whose Redis message is lost (Redis restarted) is still caught up.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from 'jose';
import {
  clientAssertion, generateClientKey, keyPairFromPrivateJwk, requestToken, TokenError, type SigningKeyPair,
} from '../../src/client/oauth-client.js';
import { ASSERTION_TYPE, decodePayload, signJws, untilReady } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { startPair, type ServerProcess } from '../support/server.js';
import { adminSession, adminWithKey, bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient } from '../support/sigil.js';
import { statusBit, statusRef } from '../support/status-list-decoder.js';
import { postForm, type Answer } from '../support/http.js';
import { eventually, observedWithin } from '../support/wait.js';

/** CONTRACT.md: "on every instance within one second" */
const PROPAGATION_MS = 1000;

/** RFC 7662 introspection at `baseUrl`, authenticated as `client` (private_key_jwt, aud = issuer). */
async function introspect(baseUrl: string, issuer: string, client: TestClient, token: string): Promise<Answer> {
  return postForm(`${baseUrl}/introspect`, {
    token,
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: await clientAssertion(client.key, client.clientId, issuer),
  });
}

/** RFC 7009 revocation at `baseUrl`, authenticated as `client`. */
async function revoke(baseUrl: string, issuer: string, client: TestClient, token: string): Promise<Answer> {
  return postForm(`${baseUrl}/revoke`, {
    token,
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: await clientAssertion(client.key, client.clientId, issuer),
  });
}

type TokenOutcome = { ok: true; token: string } | { ok: false; status: number; error: string | undefined; text: string };

async function tryToken(baseUrl: string, issuer: string, client: TestClient, key: SigningKeyPair = client.key): Promise<TokenOutcome> {
  try {
    const res = await requestToken(tokenRequest(baseUrl, issuer, { ...client, key }));
    return { ok: true, token: res.access_token };
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    return { ok: false, status: err.status, error: err.body.error, text: JSON.stringify(err.body) };
  }
}

const isInactive = (a: Answer): true | string =>
  a.status === 200 && a.body && a.body.active === false ? true : `${a.status} ${a.text.slice(0, 200)}`;

/** The stored token_events row of an issued token (written in the background, so waited for). */
async function untilRecorded(storage: TestStorage, jti: string): Promise<void> {
  await eventually(`token_events row of ${jti}`, async () => {
    const rows = await storage.sql('SELECT 1 FROM token_events WHERE jti = $1 AND outcome = $2', [jti, 'issued']);
    return rows.length > 0;
  });
}

describe('revocation across two instances', () => {
  let storage: TestStorage;
  let a: ServerProcess;
  let b: ServerProcess;
  let issuer: string;
  let admin: Admin;
  let adminB: Admin;
  let gateway: TestClient;

  before(async () => {
    storage = await createTestStorage('revocation');
    ({ a, b, issuer } = await startPair(storageEnv(storage)));
    admin = await bootstrapAdmin(a.url, issuer);
    adminB = adminWithKey(b.url, issuer, admin.key);
    gateway = await createClient(admin, { name: 'gateway', can_introspect: true });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await storage?.cleanup();
  });

  it('a client revoked on A is refused on B within one second: introspection, token endpoint and status list', async () => {
    const client = await createClient(admin, { name: 'to be revoked' });
    const onA = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    const onB = (await requestToken(tokenRequest(b.url, issuer, client))).access_token;
    // B has seen both tokens active and the client able to authenticate (its caches are warm)
    for (const t of [onA, onB]) {
      const r = await introspect(b.url, issuer, gateway, t);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.active, true, `before revocation: ${r.text}`);
      assert.equal(await statusBit(b.url, statusRef(t)), 0, 'a fresh token has status bit 0');
    }

    const res = await admin.call('POST', `/admin/clients/${client.clientId}/revoke`, { reason: 'key leaked in a paste' });
    const t0 = Date.now();
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.status, 'revoked');

    const elapsed = await Promise.all([
      observedWithin('B: the token issued by A introspects inactive', t0, PROPAGATION_MS, async () => isInactive(await introspect(b.url, issuer, gateway, onA))),
      observedWithin('B: the token issued by B introspects inactive', t0, PROPAGATION_MS, async () => isInactive(await introspect(b.url, issuer, gateway, onB))),
      observedWithin('B: the revoked client gets no new token (401 invalid_client)', t0, PROPAGATION_MS, async () => {
        const r = await tryToken(b.url, issuer, client);
        if (r.ok) return 'a token was issued';
        return r.status === 401 && r.error === 'invalid_client' ? true : `${r.status} ${r.text}`;
      }),
      observedWithin('B: the status bit of the token issued by A is 1', t0, PROPAGATION_MS, async () => {
        const bit = await statusBit(b.url, statusRef(onA));
        return bit === 1 ? true : `bit ${bit}`;
      }),
      observedWithin('B: the status bit of the token issued by B is 1', t0, PROPAGATION_MS, async () => {
        const bit = await statusBit(b.url, statusRef(onB));
        return bit === 1 ? true : `bit ${bit}`;
      }),
    ]);
    assert.equal(elapsed.length, 5);

    // and, of course, on A itself
    for (const t of [onA, onB]) assert.deepEqual((await introspect(a.url, issuer, gateway, t)).body, { active: false });
    const onAAgain = await tryToken(a.url, issuer, client);
    assert.ok(!onAAgain.ok && onAAgain.status === 401 && onAAgain.error === 'invalid_client', `A: ${JSON.stringify(onAAgain)}`);
    // the client itself can no longer authenticate anywhere, not even to introspect its own token
    const own = await introspect(b.url, issuer, client, onA);
    assert.equal(own.status, 401, own.text);
    assert.equal(own.body?.error, 'invalid_client');
  });

  it('the client record shows the revocation; revoking twice is idempotent; it is audited and in security_events', async () => {
    const client = await createClient(admin, { name: 'revoked twice' });
    const first = await admin.call('POST', `/admin/clients/${client.clientId}/revoke`, { reason: 'first reason' });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.client_id, client.clientId);
    assert.equal(first.body.status, 'revoked');
    assert.equal(first.body.revoked_by, 'sigil-admin');
    assert.equal(first.body.revoked_reason, 'first reason');
    assert.equal(typeof first.body.revoked_at, 'string');

    // read through the other instance: the same record
    const shown = await adminB.call('GET', `/admin/clients/${client.clientId}`);
    assert.equal(shown.status, 200);
    assert.equal(shown.body.status, 'revoked');
    assert.equal(shown.body.revoked_reason, 'first reason');
    const listed = await adminB.call('GET', '/admin/clients');
    assert.equal(listed.body.find((c: { client_id: string }) => c.client_id === client.clientId)?.status, 'revoked');

    // again, on the other instance, with another reason: 200, same record, nothing new recorded
    const second = await adminB.call('POST', `/admin/clients/${client.clientId}/revoke`, { reason: 'second reason' });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.equal(second.body.status, 'revoked');
    assert.equal(second.body.revoked_at, first.body.revoked_at, 'the first revocation stands');
    assert.equal(second.body.revoked_reason, 'first reason');

    const [row] = await storage.sql<{ status: string; revoked_by: string; revoked_reason: string }>(
      'SELECT status, revoked_by, revoked_reason FROM clients WHERE client_id = $1', [client.clientId]);
    assert.deepEqual({ ...row }, { status: 'revoked', revoked_by: 'sigil-admin', revoked_reason: 'first reason' });

    const events = await storage.sql<{ actor: string; reason: string; client_id: string }>(
      "SELECT actor, reason, client_id FROM security_events WHERE kind = 'client_revoked' AND target = $1", [client.clientId]);
    assert.equal(events.length, 1, `one security event, not two: ${JSON.stringify(events)}`);
    assert.deepEqual({ ...events[0] }, { actor: 'sigil-admin', reason: 'first reason', client_id: client.clientId });

    const audit = await storage.sql<{ actor: string; reason: string }>(
      "SELECT actor, reason FROM audit_log WHERE action = 'client.revoke' AND target = $1 ORDER BY id", [client.clientId]);
    assert.ok(audit.length >= 1, 'the revocation is in audit_log');
    assert.deepEqual({ ...audit[0] }, { actor: 'sigil-admin', reason: 'first reason' });

    // unknown clients and the admin client itself
    const unknown = await admin.call('POST', '/admin/clients/no-such-client/revoke', { reason: 'x' });
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
    const self = await admin.call('POST', '/admin/clients/sigil-admin/revoke', { reason: 'x' });
    assert.equal(self.status, 400, JSON.stringify(self.body));
  });

  it('an admin revocation of one jti on A makes that token inactive on B within one second; the client\'s other token stays active', async () => {
    const client = await createClient(admin, { name: 'one token revoked' });
    const doomed = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    const kept = (await requestToken(tokenRequest(b.url, issuer, client))).access_token;
    const { jti, exp } = decodePayload(doomed);
    for (const t of [doomed, kept]) assert.equal((await introspect(b.url, issuer, gateway, t)).body?.active, true);
    // an operator revokes a jti seen in the logs, i.e. after Sigil recorded it
    await untilRecorded(storage, jti);

    const res = await admin.call('POST', '/admin/tokens/revoke', { jti, reason: 'exfiltrated' });
    const t0 = Date.now();
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.jti, jti);
    assert.equal(res.body.status, 'revoked');
    assert.equal(res.body.client_id, client.clientId);
    assert.equal(res.body.revoked_by, 'sigil-admin');
    assert.equal(res.body.reason, 'exfiltrated');
    assert.equal(res.body.known, true);

    await Promise.all([
      observedWithin('B: the revoked jti introspects inactive', t0, PROPAGATION_MS, async () => isInactive(await introspect(b.url, issuer, gateway, doomed))),
      observedWithin('B: the revoked jti has status bit 1', t0, PROPAGATION_MS, async () => {
        const bit = await statusBit(b.url, statusRef(doomed));
        return bit === 1 ? true : `bit ${bit}`;
      }),
    ]);
    // the same client's other token, and the client itself, are untouched
    for (const server of [a, b]) {
      const r = await introspect(server.url, issuer, gateway, kept);
      assert.equal(r.body?.active, true, `${server.url}: the other token stays active: ${r.text}`);
      assert.equal(await statusBit(server.url, statusRef(kept)), 0);
      assert.ok((await tryToken(server.url, issuer, client)).ok, 'the client still gets tokens');
    }
    assert.equal((await introspect(a.url, issuer, client, doomed)).body?.active, false, 'its owner sees it inactive too');

    // recorded: security event, audit row; revoking it again is a no-op returning the same record
    const events = await storage.sql<{ client_id: string; actor: string; reason: string; exp: number }>(
      "SELECT client_id, actor, reason, extract(epoch FROM expires_at)::int AS exp FROM security_events WHERE kind = 'token_revoked' AND target = $1", [jti]);
    assert.equal(events.length, 1);
    assert.deepEqual({ ...events[0] }, { client_id: client.clientId, actor: 'sigil-admin', reason: 'exfiltrated', exp });
    const audit = await storage.sql("SELECT 1 FROM audit_log WHERE actor = 'sigil-admin' AND action = 'token.revoke' AND target = $1 AND reason = 'exfiltrated'", [jti]);
    assert.equal(audit.length, 1, 'the token revocation is in audit_log');
    const again = await adminB.call('POST', '/admin/tokens/revoke', { jti, reason: 'twice' });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.revoked_at, res.body.revoked_at);
    assert.equal(again.body.reason, 'exfiltrated');
    assert.equal((await storage.sql("SELECT 1 FROM security_events WHERE kind = 'token_revoked' AND target = $1", [jti])).length, 1);
  });

  it('an admin revocation of a jti Sigil never issued is recorded (known: false) and changes nothing else', async () => {
    const res = await admin.call('POST', '/admin/tokens/revoke', { jti: 'never-issued-jti-0001', reason: 'precaution' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.jti, 'never-issued-jti-0001');
    assert.equal(res.body.status, 'revoked');
    assert.equal(res.body.known, false);
    const bad = await admin.call('POST', '/admin/tokens/revoke', { reason: 'no jti' });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
  });

  it('RFC 7009: a client revoking its own token on B makes it inactive on A within one second', async () => {
    const client = await createClient(admin, { name: 'self revoker' });
    const doomed = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    const kept = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    const { jti } = decodePayload(doomed);
    assert.equal((await introspect(a.url, issuer, gateway, doomed)).body?.active, true);
    assert.equal(await statusBit(a.url, statusRef(doomed)), 0);

    const res = await revoke(b.url, issuer, client, doomed);
    const t0 = Date.now();
    assert.equal(res.status, 200, res.text);

    await Promise.all([
      observedWithin('A: the self-revoked token introspects inactive (gateway)', t0, PROPAGATION_MS, async () => isInactive(await introspect(a.url, issuer, gateway, doomed))),
      observedWithin('A: the self-revoked token introspects inactive (owner)', t0, PROPAGATION_MS, async () => isInactive(await introspect(a.url, issuer, client, doomed))),
      observedWithin('A: the self-revoked token has status bit 1', t0, PROPAGATION_MS, async () => {
        const bit = await statusBit(a.url, statusRef(doomed));
        return bit === 1 ? true : `bit ${bit}`;
      }),
    ]);
    assert.equal((await introspect(a.url, issuer, gateway, kept)).body?.active, true, 'its other token stays active');
    assert.equal((await introspect(b.url, issuer, gateway, kept)).body?.active, true, 'its other token stays active');

    const events = await storage.sql<{ client_id: string; actor: string }>(
      "SELECT client_id, actor FROM security_events WHERE kind = 'token_revoked' AND target = $1", [jti]);
    assert.deepEqual(events.map((e) => ({ ...e })), [{ client_id: client.clientId, actor: client.clientId }]);
    const audit = await storage.sql<{ actor: string; reason: string | null }>(
      "SELECT actor, reason FROM audit_log WHERE action = 'token.revoke' AND target = $1", [jti]);
    assert.equal(audit.length, 1, 'the RFC 7009 revocation is audited');
    assert.equal(audit[0]!.actor, client.clientId);

    // revoking it again is still a 200
    assert.equal((await revoke(a.url, issuer, client, doomed)).status, 200);
  });

  it('a client revoking ANOTHER client\'s token gets 200, and the token stays active everywhere', async () => {
    const owner = await createClient(admin, { name: 'owner' });
    const intruder = await createClient(admin, { name: 'intruder' });
    const token = (await requestToken(tokenRequest(a.url, issuer, owner))).access_token;
    const { jti } = decodePayload(token);

    for (const server of [a, b]) {
      const res = await revoke(server.url, issuer, intruder, token);
      assert.equal(res.status, 200, `RFC 7009 §2.2: no hint that the token exists: ${res.text}`);
    }
    // the instances where the attempt was made would have applied a revocation at once; Postgres is the truth
    assert.equal((await storage.sql('SELECT 1 FROM security_events WHERE target = $1', [jti])).length, 0, 'nothing was revoked');
    for (const server of [a, b]) {
      const r = await introspect(server.url, issuer, gateway, token);
      assert.equal(r.body?.active, true, `${server.url}: ${r.text}`);
      assert.equal(await statusBit(server.url, statusRef(token)), 0);
    }
    assert.equal((await introspect(a.url, issuer, owner, token)).body?.active, true);
  });

  it('unknown, garbage and forged tokens at /revoke get 200 and revoke nothing', async () => {
    const client = await createClient(admin, { name: 'revokes junk' });
    const real = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await signJws({ alg: 'ES256', typ: 'at+jwt', kid: JSON.parse(Buffer.from(real.split('.')[0]!, 'base64url').toString()).kid },
      { ...decodePayload(real), jti: 'forged-jti-0001' }, privateKey);
    const [before] = await storage.sql<{ n: string }>('SELECT count(*) AS n FROM security_events');
    const junk: Array<[string, string]> = [
      ['garbage', 'garbage'],
      ['three dot-separated segments', 'a.b.c'],
      ['an unsigned (alg: none) JWT, empty signature segment', 'eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0.'],
      ['a JWT signed by a key that is not Sigil\'s', forged],
      ['a JWE-shaped token (five segments)', 'eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d'],
      ['a lone JOSE header segment', 'eyJhbGciOiJFUzI1NiJ9'],
      ['a long string', 'x'.repeat(2000)],
    ];
    const wrong: string[] = [];
    for (const [what, token] of junk) {
      for (const server of [a, b]) {
        const res = await revoke(server.url, issuer, client, token);
        if (res.status !== 200) wrong.push(`${what} at ${server.url === a.url ? 'A' : 'B'}: ${res.status} ${res.text}`);
      }
    }
    assert.deepEqual(wrong, [], 'RFC 7009 §2.2: an invalid token is answered 200');
    const [afterCount] = await storage.sql<{ n: string }>('SELECT count(*) AS n FROM security_events');
    assert.equal(afterCount!.n, before!.n, 'no security event for junk');
    assert.equal((await introspect(a.url, issuer, client, real)).body?.active, true, 'the real token (same claims as the forged one) is untouched');
  });

  it('/revoke without valid client authentication is 401 invalid_client', async () => {
    const client = await createClient(admin, { name: 'unauthenticated revoke' });
    const token = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    const other = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
    const attempts: Array<[string, Record<string, string | undefined>]> = [
      ['no client authentication', { token }],
      ['client_id only', { token, client_id: client.clientId }],
      ['assertion signed by a key the client does not have', { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(other, client.clientId, issuer) }],
    ];
    const wrong: string[] = [];
    for (const [what, fields] of attempts) {
      const res = await postForm(`${b.url}/revoke`, fields);
      if (res.status !== 401 || res.body?.error !== 'invalid_client') wrong.push(`${what}: ${res.status} ${res.text}`);
    }
    assert.deepEqual(wrong, [], 'RFC 6749 §5.2 (RFC 7009 §2.1): failed or missing client authentication is 401 invalid_client');
    assert.equal((await introspect(a.url, issuer, gateway, token)).body?.active, true);
  });

  it('replacing a client\'s keys on A: within one second B refuses the old key and accepts the new one', async () => {
    const client = await createClient(admin, { name: 'rotating' });
    const oldKey = client.key;
    // B knows the client with its old key
    assert.ok((await tryToken(b.url, issuer, client, oldKey)).ok, 'the old key works before the change');
    const { privateJwk, publicJwks } = await generateClientKey('ES256');
    const newKey = await keyPairFromPrivateJwk(privateJwk);
    const before = await tryToken(b.url, issuer, client, newKey);
    assert.ok(!before.ok && before.status === 401, `the new key is unknown before the change: ${JSON.stringify(before)}`);

    const res = await admin.call('PUT', `/admin/clients/${client.clientId}/jwks`, { jwks: publicJwks });
    const t0 = Date.now();
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.jwks.keys.map((k: { kid: string }) => k.kid), [newKey.kid]);

    await Promise.all([
      observedWithin('B: an assertion signed with the old key is refused (401 invalid_client)', t0, PROPAGATION_MS, async () => {
        const r = await tryToken(b.url, issuer, client, oldKey);
        if (r.ok) return 'a token was issued for the old key';
        return r.status === 401 && r.error === 'invalid_client' ? true : `${r.status} ${r.text}`;
      }),
      observedWithin('B: an assertion signed with the new key gets a token', t0, PROPAGATION_MS, async () => {
        const r = await tryToken(b.url, issuer, client, newKey);
        return r.ok ? true : `${r.status} ${r.text}`;
      }),
    ]);
    const onA = await tryToken(a.url, issuer, client, oldKey);
    assert.ok(!onA.ok && onA.status === 401, `A refuses the old key: ${JSON.stringify(onA)}`);
    assert.ok((await tryToken(a.url, issuer, client, newKey)).ok, 'A accepts the new key');

    const events = await storage.sql<{ actor: string }>("SELECT actor FROM security_events WHERE kind = 'client_keys_changed' AND target = $1", [client.clientId]);
    assert.deepEqual(events.map((e) => e.actor), ['sigil-admin']);
    const audit = await storage.sql<{ actor: string; details: { kids?: string[] } }>(
      "SELECT actor, details FROM audit_log WHERE action = 'client.keys.set' AND target = $1", [client.clientId]);
    assert.equal(audit.length, 1, 'the key change is in audit_log');
    assert.equal(audit[0]!.actor, 'sigil-admin');
    assert.deepEqual(audit[0]!.details.kids, [newKey.kid]);

    const unknown = await admin.call('PUT', '/admin/clients/no-such-client/jwks', { jwks: publicJwks });
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
  });

  it('every admin action of this file is in audit_log with actor, action, target and reason', async () => {
    const rows = await storage.sql<{ actor: string; action: string; target: string | null }>('SELECT actor, action, target FROM audit_log ORDER BY id');
    for (const r of rows) {
      assert.ok(r.actor, `actor: ${JSON.stringify(r)}`);
      assert.ok(r.action, `action: ${JSON.stringify(r)}`);
      assert.ok(r.target, `target: ${JSON.stringify(r)}`);
    }
    const revoked = await storage.sql<{ client_id: string }>("SELECT client_id FROM clients WHERE status = 'revoked'");
    for (const { client_id } of revoked) {
      const audit = await storage.sql("SELECT 1 FROM audit_log WHERE action = 'client.revoke' AND target = $1 AND actor = 'sigil-admin'", [client_id]);
      assert.ok(audit.length >= 1, `the revocation of ${client_id} is audited`);
      const event = await storage.sql("SELECT 1 FROM security_events WHERE kind = 'client_revoked' AND target = $1", [client_id]);
      assert.equal(event.length, 1, `the revocation of ${client_id} is a security event`);
    }
    assert.ok(revoked.length >= 2);
  });
});

describe('revocation survives a Redis restart (dedicated redis-server)', () => {
  let redis: RedisServer;
  let storage: TestStorage;
  let a: ServerProcess;
  let b: ServerProcess;
  let issuer: string;
  let admin: Admin;
  let gateway: TestClient;

  before(async () => {
    redis = await startRedisServer();
    storage = await createTestStorage('revocation_redis');
    ({ a, b, issuer } = await startPair({ ...storageEnv(storage), REDIS_URL: redis.url }));
    admin = await bootstrapAdmin(a.url, issuer);
    gateway = await createClient(admin, { name: 'gateway', can_introspect: true });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await redis?.close();
    await storage?.cleanup();
  });

  /**
   * after Redis came back: poll (up to 20 s) until the instance is ready and sees the client revoked.
   * A restarted Redis has lost its replay records: every instance answers 503 for ~8 s (README).
   */
  async function untilRevokedOn(server: ServerProcess, client: TestClient, token: string, context = ''): Promise<void> {
    const name = `${server === a ? 'A' : 'B'} (${server.url})`;
    await eventually(`${name}: the revocation fully visible after Redis came back${context}`, async () => {
      const r = await introspect(server.url, issuer, gateway, token).catch((e: Error) => ({ status: 0, text: e.message, body: undefined }) as Answer);
      const t = await tryToken(server.url, issuer, client).catch((e: Error) => ({ ok: false, status: 0, error: e.message, text: e.message }) as TokenOutcome);
      const bit = await statusBit(server.url, statusRef(token)).catch((e: Error) => e.message.slice(0, 160));
      const seen = {
        introspection: r.status === 200 && r.body?.active === false ? 'ok' : `${r.status} ${r.text.slice(0, 160)}`,
        tokenEndpoint: !t.ok && t.status === 401 && t.error === 'invalid_client' ? 'ok' : JSON.stringify(t).slice(0, 160),
        statusBit: bit === 1 ? 'ok' : `bit ${bit}`,
      };
      if (Object.values(seen).every((v) => v === 'ok')) return true;
      throw new Error(JSON.stringify(seen));
    }, { timeout: 20_000, every: 50 });
  }

  /** Both instances have seen Redis go (their readiness probe answers 503): Redis was down for them, not only stopped. */
  async function untilBothSeeRedisDown(): Promise<void> {
    for (const server of [a, b]) await eventually(`${server.url}/ready reports 503 while Redis is down`, async () => (await fetch(`${server.url}/ready`)).status === 503);
  }

  it('a revocation made while Redis is down (its message lost) is caught up by both instances once Redis is back', async () => {
    const client = await createClient(admin, { name: 'revoked behind redis\'s back' });
    const token = (await requestToken(tokenRequest(b.url, issuer, client))).access_token;
    await untilRecorded(storage, decodePayload(token).jti);
    for (const server of [a, b]) assert.equal((await introspect(server.url, issuer, gateway, token)).body?.active, true);

    await redis.stop();
    // While Redis is down Sigil fails closed (503), so the revocation is written the way Sigil writes
    // it (revocations.ts: one transaction: client row, numbered security event, status bits, audit),
    // with no pub/sub message to announce it: only Postgres knows.
    await storage.sql(
      `WITH c AS (
         UPDATE clients SET status = 'revoked', revoked_at = now(), revoked_by = 'sigil-admin', revoked_reason = 'written while redis was down', updated_at = now()
         WHERE client_id = $1 AND status = 'active' RETURNING client_id),
       v AS (UPDATE security_event_counter SET version = version + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM c) RETURNING version),
       e AS (INSERT INTO security_events (version, kind, target, client_id, actor, reason)
             SELECT version, 'client_revoked', $1, $1, 'sigil-admin', 'written while redis was down' FROM v RETURNING version),
       s AS (INSERT INTO status_bits (list_id, idx)
             SELECT status_list, status_idx FROM token_events
             WHERE client_id = $1 AND outcome = 'issued' AND expires_at > now() AND status_list IS NOT NULL AND EXISTS (SELECT 1 FROM e)
             ON CONFLICT DO NOTHING RETURNING list_id)
       INSERT INTO audit_log (actor, action, target, reason)
       SELECT 'sigil-admin', 'client.revoke', $1, 'written while redis was down' FROM e`,
      [client.clientId],
    );
    assert.equal((await storage.sql("SELECT 1 FROM security_events WHERE kind = 'client_revoked' AND target = $1", [client.clientId])).length, 1);
    await untilBothSeeRedisDown();
    await redis.start();

    await untilRevokedOn(b, client, token);
    await untilRevokedOn(a, client, token);
  });

  it('a revocation made on A right before Redis stops is not lost', async () => {
    const client = await createClient(admin, { name: 'revoked just before redis stops' });
    const [onA, onB] = await Promise.all([a, b].map(async (s) => (await requestToken(tokenRequest(s.url, issuer, client))).access_token)) as [string, string];
    // gateways have read the lists (both instances have built them) before the revocation
    const bits = await Promise.all([a, b].flatMap((s) => [onA, onB].map((t) => statusBit(s.url, statusRef(t)))));
    assert.deepEqual(bits, [0, 0, 0, 0]);

    // revoked at once, before the issuing instances wrote their token records (a token in flight)
    const res = await admin.call('POST', `/admin/clients/${client.clientId}/revoke`, { reason: 'just in time' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await redis.stop('SIGKILL');
    await untilBothSeeRedisDown();
    await redis.start();

    for (const server of [b, a]) {
      await untilReady(server.url, 20_000);
      await untilRevokedOn(server, client, onA);
      await untilRevokedOn(server, client, onB);
    }
  });

  it('a client revoked while its newest token is still in flight, right before Redis stops, is not lost either (status list included)', async () => {
    // The token's issuance record reaches Postgres in the background (token_events, batched every
    // ~200 ms). This test makes the revocation land before that record does, and Redis stop before
    // the record is written, deterministically: it waits for one batch to be written, then issues,
    // revokes and stops Redis at once, well within the next batch interval.
    const client = await createClient(admin, { name: 'revoked while its token is in flight' });
    const marker = await createClient(admin, { name: 'flush marker' });
    const callA = await adminSession(a.url, issuer, admin.key);
    const markerToken = (await requestToken(tokenRequest(a.url, issuer, marker))).access_token;
    const markerJti = decodePayload(markerToken).jti;
    // gateways read the list (both instances build and keep it) before anything happens
    for (const server of [a, b]) assert.equal(await statusBit(server.url, statusRef(markerToken)), 0);

    await eventually('a token_events batch written by A', async () => (await storage.sql('SELECT 1 FROM token_events WHERE jti = $1', [markerJti])).length > 0, { timeout: 5000 });
    const started = Date.now();
    const token = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    const res = await callA('POST', `/admin/clients/${client.clientId}/revoke`, { reason: 'in flight' });
    // gateways refetch the list as soon as the revocation is announced
    await Promise.all([a, b].map((server) => statusBit(server.url, statusRef(token))));
    await redis.stop('SIGKILL');
    const took = Date.now() - started;
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const recordedBeforeStop = (await storage.sql('SELECT 1 FROM token_events WHERE jti = $1', [decodePayload(token).jti])).length > 0;
    await untilBothSeeRedisDown();
    // Postgres has the truth by now: the revocation, and the bit (set by the batch that came late)
    await eventually('the token\'s status bit in Postgres', async () => {
      const { uri, idx } = statusRef(token);
      return (await storage.sql('SELECT 1 FROM status_bits WHERE list_id = $1 AND idx = $2', [uri.slice(uri.lastIndexOf('/') + 1), idx])).length > 0;
    }, { timeout: 5000 });
    await redis.start();

    const context = ` [issue → revoke → gateways refetch → Redis stopped took ${took} ms; the token's issuance record was ${recordedBeforeStop ? 'already' : 'not yet'} in Postgres when Redis stopped]`;
    const outcomes = await Promise.allSettled([a, b].map(async (server) => {
      await untilReady(server.url, 20_000);
      await untilRevokedOn(server, client, token, context);
    }));
    const failures = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected').map((o) => (o.reason as Error).message);
    assert.deepEqual(failures, []);
  });
});
