// The trust configuration store and the workload-client index on real Postgres: two "instances" (two
// pools, two buses that never hear each other, so only the periodic re-read can carry a change)
// converge; every change is audited; a copy that cannot be refreshed past its bound answers unknown;
// the index finds SPIFFE and federated clients and stops returning a revoked one.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ClientStore } from '../../src/clients/client-store.js';
import { createMemoryStore, type FastStore } from '../../src/storage/fast-store.js';
import { migrate } from '../../src/storage/migrate.js';
import { parseSpiffeId } from '../../src/workload/spiffe-id.js';
import { TrustStore, type TrustChange } from '../../src/workload/trust-store.js';
import { WorkloadClients } from '../../src/workload/workload-clients.js';
import { eventually } from '../support/wait.js';
import { makePgDb, sampleClient, silentLog, type TestDb } from './helpers.js';

const spiffe = (id: string) => {
  const p = parseSpiffeId(id);
  assert.ok(p.ok);
  return p.value;
};

describe('TrustStore and WorkloadClients on Postgres', () => {
  let t: TestDb;
  const buses: FastStore[] = [];
  const stores: TrustStore[] = [];
  let clientsA: ClientStore;
  let a: TrustStore;
  let b: TrustStore;
  const seenByB: TrustChange[] = [];

  const bus = () => {
    const s = createMemoryStore();
    buses.push(s);
    return s;
  };
  const trustStore = (clients: ClientStore, opts: ConstructorParameters<typeof TrustStore>[4] = {}) => {
    const s = new TrustStore(clients === clientsA ? t.db : t.second(), bus(), silentLog, clients, opts);
    stores.push(s);
    return s;
  };

  before(async () => {
    t = await makePgDb();
    await migrate(t.db);
    clientsA = new ClientStore(t.db, bus());
    a = trustStore(clientsA);
    b = trustStore(new ClientStore(t.second(), bus()));
    b.onChange((c) => seenByB.push(c));
    await a.start();
    await b.start();
  });
  after(async () => {
    for (const s of stores) s.close();
    for (const s of buses) await s.close();
    await t?.cleanup();
  });

  it('an added trust domain is known at once where it was added, on the other instance by its re-read, and audited', async () => {
    const added = await a.addTrustDomain({ name: 'example.org', bundleEndpoint: 'https://spire.example.org/bundle' }, 'sigil-admin');
    assert.equal(added?.name, 'example.org');
    assert.equal((await a.trustDomain('example.org'))?.bundleEndpoint, 'https://spire.example.org/bundle');
    await eventually('instance B knows example.org', async () => (await b.trustDomain('example.org')) !== undefined);
    await eventually('B told its listeners', () => seenByB.some((c) => c.kind === 'trust-domain' && c.key === 'example.org'));
    const rows = await t.sql<{ actor: string; target: string; details: unknown }>("SELECT actor, target, details FROM audit_log WHERE action = 'trust_domain.add'");
    assert.deepEqual(rows, [{ actor: 'sigil-admin', target: 'example.org', details: { bundle_endpoint: 'https://spire.example.org/bundle' } }]);
    // adding it again changes nothing
    assert.equal(await a.addTrustDomain({ name: 'example.org', bundleEndpoint: 'https://evil.example/bundle' }, 'sigil-admin'), undefined);
    assert.equal((await a.trustDomain('example.org'))?.bundleEndpoint, 'https://spire.example.org/bundle');
  });

  it('a federation is added with its settings, and removal lists the clients that relied on it', async () => {
    const issuer = 'https://k8s.example';
    await a.addFederation({ issuer, audience: 'sigil', maxLifetimeSeconds: 600 }, 'sigil-admin');
    const f = await eventually('B knows the federation', () => b.federation(issuer));
    assert.equal(f.audience, 'sigil');
    assert.equal(f.jwksUri, undefined);
    assert.equal(f.maxLifetimeSeconds, 600);
    await clientsA.create(sampleClient('k8s-api', { jwks: undefined, workload: { kind: 'federated', issuer, subject: 'system:serviceaccount:p:api', claims: {} } }));
    await clientsA.create(sampleClient('k8s-gone', { jwks: undefined, workload: { kind: 'federated', issuer, subject: 'system:serviceaccount:p:old', claims: {} } }));
    await t.sql("UPDATE clients SET status = 'revoked' WHERE client_id = 'k8s-gone'");

    const removal = await b.removeFederation(issuer, 'sigil-admin');
    assert.deepEqual(removal?.affectedClients, ['k8s-api'], 'active clients only');
    assert.equal(await b.federation(issuer), undefined, 'unknown at once where removed');
    await eventually('A forgets the federation', async () => (await a.federation(issuer)) === undefined);
    const rows = await t.sql<{ details: { affected_clients: string[] } }>("SELECT details FROM audit_log WHERE action = 'federation.remove'");
    assert.deepEqual(rows.map((r) => r.details.affected_clients), [['k8s-api']]);
    assert.equal(await b.removeFederation(issuer, 'sigil-admin'), undefined, 'nothing left to remove');
  });

  it('removing a trust domain lists its SPIFFE clients, not those of a look-alike domain', async () => {
    await a.addTrustDomain({ name: 'ex_mple.org', bundleEndpoint: 'https://spire.ex.org/b' }, 'sigil-admin');
    await clientsA.create(sampleClient('svid-api', { jwks: undefined, workload: { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/pay/api' } }));
    await clientsA.create(sampleClient('svid-other', { jwks: undefined, workload: { kind: 'spiffe', spiffeId: 'spiffe://exAmple.org/ns/pay/api' } }));
    // "_" would be a LIKE wildcard matching "a": the removal must compare exactly
    const removal = await a.removeTrustDomain('ex_mple.org', 'sigil-admin');
    assert.deepEqual(removal?.affectedClients, []);
  });

  it('a bus message makes another instance re-read at once, without waiting for its periodic re-read', async () => {
    const shared = bus();
    const hour = { refreshMs: 3_600_000, staleMs: 3_600_000 };
    const db1 = t.second();
    const db2 = t.second();
    const one = new TrustStore(db1, shared, silentLog, new ClientStore(db1, bus()), hour);
    const two = new TrustStore(db2, shared, silentLog, new ClientStore(db2, bus()), hour);
    stores.push(one, two);
    await one.start();
    await two.start();
    await one.addTrustDomain({ name: 'bus.example', bundleEndpoint: 'https://spire.bus.example/b' }, 'sigil-admin');
    await eventually('two hears of bus.example on the bus', async () => (await two.trustDomain('bus.example')) !== undefined);
    await two.removeTrustDomain('bus.example', 'sigil-admin');
    await eventually('one hears of the removal on the bus', async () => (await one.trustDomain('bus.example')) === undefined);

    // whoever can publish on the channel chooses the message: it only makes an instance re-read Postgres
    const seen: TrustChange[] = [];
    two.onChange((c) => seen.push(c));
    await shared.publish('workload-trust', JSON.stringify({ kind: 'trust-domain', key: 'forged.example' }));
    await shared.publish('workload-trust', '\u0000not json');
    await two.refresh();
    assert.equal(await two.trustDomain('forged.example'), undefined);
    assert.deepEqual(seen, [], 'a message that changes nothing in Postgres changes nothing');
  });

  it('fails closed: a copy older than the bound answers unknown, and is used again once re-read', async () => {
    let now = 1_000_000;
    const second = t.second();
    const s = new TrustStore(second, bus(), silentLog, new ClientStore(second, bus()), { now: () => now, refreshMs: 3_600_000 });
    stores.push(s);
    await s.start();
    assert.ok(await s.trustDomain('example.org'));
    now += 1000;
    assert.ok(await s.trustDomain('example.org'), 'at the bound it is still used');
    now += 1;
    assert.equal(await s.trustDomain('example.org'), undefined, 'past the bound: unknown');
    assert.equal(s.current(), undefined, 'and the list is refused too');
    await s.refresh();
    assert.ok(await s.trustDomain('example.org'), 'fresh again');
    // the database goes away: refreshes fail, and past the bound nothing is trusted
    await second.close();
    await s.refresh();
    assert.ok(await s.trustDomain('example.org'), 'still within the bound');
    now += 1001;
    await s.refresh();
    assert.equal(await s.trustDomain('example.org'), undefined, 'not refreshed past the bound: unknown');
  });

  it('WorkloadClients: SPIFFE prefix and exact matches, federated subjects, and no revoked client after the change', async () => {
    const index = new WorkloadClients(clientsA);
    await clientsA.create(sampleClient('svid-prefix', { jwks: undefined, workload: { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/jobs/*' } }));
    assert.deepEqual((await index.bySpiffeId(spiffe('spiffe://example.org/ns/pay/api'))).map((c) => c.clientId), ['svid-api']);
    assert.deepEqual((await index.bySpiffeId(spiffe('spiffe://example.org/ns/jobs/nightly/1'))).map((c) => c.clientId), ['svid-prefix']);
    assert.deepEqual(await index.bySpiffeId(spiffe('spiffe://example.org/ns/jobs')), [], 'a prefix does not match itself');
    assert.deepEqual(await index.bySpiffeId(spiffe('spiffe://example.org/ns/pay/api/x')), []);
    assert.deepEqual(await index.bySpiffeId(spiffe('spiffe://other.org/ns/pay/api')), []);
    assert.deepEqual((await index.byFederatedSubject('https://k8s.example', 'system:serviceaccount:p:api')).map((c) => c.clientId), ['k8s-api']);
    assert.deepEqual(await index.byFederatedSubject('https://k8s.example', 'system:serviceaccount:p:old'), [], 'revoked');

    // revoked as Revocations does it: the row, then the cache invalidation every instance gets
    await t.sql("UPDATE clients SET status = 'revoked' WHERE client_id = 'svid-api'");
    clientsA.invalidate('svid-api');
    assert.deepEqual(await index.bySpiffeId(spiffe('spiffe://example.org/ns/pay/api')), []);

    // a new client is found at once on the instance that created it (create() announces it)
    await clientsA.create(sampleClient('svid-new', { jwks: undefined, workload: { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/pay/api' } }));
    assert.deepEqual((await index.bySpiffeId(spiffe('spiffe://example.org/ns/pay/api'))).map((c) => c.clientId), ['svid-new']);
  });

  it('WorkloadClients: a change missed on the bus is seen once the cache entry passes its bound', async () => {
    let now = 5_000_000;
    const other = new ClientStore(t.second(), bus());
    const index = new WorkloadClients(other, { now: () => now });
    assert.deepEqual((await index.bySpiffeId(spiffe('spiffe://example.org/ns/pay/api'))).map((c) => c.clientId), ['svid-new']);
    await t.sql("UPDATE clients SET status = 'revoked' WHERE client_id = 'svid-new'");
    assert.deepEqual((await index.bySpiffeId(spiffe('spiffe://example.org/ns/pay/api'))).map((c) => c.clientId), ['svid-new'], 'cached within the bound');
    now += 1000;
    assert.deepEqual(await index.bySpiffeId(spiffe('spiffe://example.org/ns/pay/api')), [], 're-read past it');
  });
});
