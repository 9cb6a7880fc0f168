// The trust configuration across instances: two real Sigil processes on one Postgres and one Redis
// behind one ISSUER. A trust domain or federation added or removed on one is seen by the other within
// one second (through the admin list, which answers from each instance's copy), every change is
// audited, and workload-bound clients are created only against configured trust, never with a
// binding that overlaps another active client's, even when two instances race. What is added is
// fetched once first (a real HTTPS bundle endpoint and a stand-in Kubernetes issuer with the suite's
// test CA): an endpoint that cannot be used is refused at add, with the reason.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { freePort, startPair, type Pair } from '../support/server.js';
import { adminWithKey, bootstrapAdmin, type Admin } from '../support/sigil.js';
import { observedWithin } from '../support/wait.js';
import {
  createTestCa, generateSigningKey, startBundleServer, startServiceAccountIssuer, workloadServerEnv,
  type BundleServer, type ServiceAccountIssuer, type TestCa,
} from '../support/workload.js';

/** the issue: "refused within a second on every instance" */
const PROPAGATION_MS = 1000;

describe('workload trust configuration across two instances', () => {
  let storage: TestStorage;
  let pair: Pair;
  let onA: Admin;
  let onB: Admin;
  let ca: TestCa;
  let bundle: BundleServer;
  let k8s: ServiceAccountIssuer;
  /** the stand-in Kubernetes issuer's URL (https://localhost:PORT) */
  let K8S: string;

  before(async () => {
    ca = createTestCa();
    [bundle, k8s] = await Promise.all([startBundleServer(ca, { jwtKeys: [await generateSigningKey()] }), startServiceAccountIssuer(ca)]);
    K8S = k8s.issuer;
    storage = await createTestStorage('wltrust');
    pair = await startPair({ ...storageEnv(storage), ...workloadServerEnv(ca) });
    onA = await bootstrapAdmin(pair.a.url, pair.issuer);
    onB = adminWithKey(pair.b.url, pair.issuer, onA.key);
  });
  after(async () => {
    await pair?.a.stop();
    await pair?.b.stop();
    await storage?.cleanup();
    await bundle?.close();
    await k8s?.close();
    ca?.close();
  });

  const names = async (admin: Admin) => {
    const res = await admin.call('GET', '/admin/trust-domains');
    return res.status === 200 ? (res.body as Array<{ name: string }>).map((t) => t.name) : `status ${res.status}`;
  };
  const issuers = async (admin: Admin) => {
    const res = await admin.call('GET', '/admin/federations');
    return res.status === 200 ? (res.body as Array<{ issuer: string }>).map((f) => f.issuer) : `status ${res.status}`;
  };

  it('the trust routes are for the admin only', async () => {
    for (const [method, path] of [['GET', '/admin/trust-domains'], ['POST', '/admin/trust-domains'], ['POST', '/admin/trust-domains/remove'],
      ['GET', '/admin/federations'], ['POST', '/admin/federations'], ['POST', '/admin/federations/remove']]) {
      const res = await fetch(`${pair.a.url}${path}`, { method, headers: { 'content-type': 'application/json' }, body: method === 'POST' ? '{}' : undefined });
      assert.equal(res.status, 401, `${method} ${path}`);
    }
  });

  it('a trust domain added on A is listed by B within a second, and the change is audited', async () => {
    const res = await onA.call('POST', '/admin/trust-domains', { name: 'example.org', bundle_endpoint: bundle.endpoint });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const t0 = Date.now();
    assert.equal(res.body.name, 'example.org');
    assert.equal(res.body.bundle_endpoint, bundle.endpoint);
    assert.equal(res.body.created_by, 'sigil-admin');
    await observedWithin('B lists example.org', t0, PROPAGATION_MS, async () => {
      const seen = await names(onB);
      return Array.isArray(seen) && seen.includes('example.org') ? true : JSON.stringify(seen);
    });
    const rows = await storage.sql<{ actor: string; target: string }>("SELECT actor, target FROM audit_log WHERE action = 'trust_domain.add'");
    assert.deepEqual(rows, [{ actor: 'sigil-admin', target: 'example.org' }]);
  });

  it('refuses bad trust input with 400 invalid_request, a duplicate with 409', async () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ name: 'Example.org', bundle_endpoint: 'https://a.example/b' }, /lowercase/],
      [{ name: 'x.org', bundle_endpoint: 'http://a.example/b' }, /https/],
      [{ name: 'x.org', bundle_endpoint: 'https://10.0.0.7/b' }, /private address/],
      [{ name: 'x.org', bundle_endpoint: 'https://127.0.0.1/b' }, /loopback address/],
      [{ name: 'x.org' }, /bundle_endpoint/],
      [{ name: 'x.org', bundle_endpoint: 'https://a.example/b', extra: true }, /unknown member/],
      [[], /JSON object/],
    ];
    for (const [body, message] of bad) {
      const res = await onA.call('POST', '/admin/trust-domains', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error, 'invalid_request');
      assert.match(res.body.error_description, message);
    }
    const fed = await onA.call('POST', '/admin/federations', { issuer: K8S, max_lifetime_seconds: 86401 });
    assert.equal(fed.status, 400);
    assert.match(fed.body.error_description, /from 60 to 86400/);
    const dup = await onB.call('POST', '/admin/trust-domains', { name: 'example.org', bundle_endpoint: bundle.endpoint });
    assert.equal(dup.status, 409);
    assert.match(dup.body.error_description, /configured already/);
    const missing = await onB.call('POST', '/admin/trust-domains/remove', { name: 'nowhere.example' });
    assert.equal(missing.status, 404);
  });

  it('refuses at add, with the reason (400), a bundle endpoint that does not answer and a federation whose discovery names another issuer', async () => {
    const down = `https://localhost:${await freePort()}/bundle`;
    const td = await onA.call('POST', '/admin/trust-domains', { name: 'down.example', bundle_endpoint: down });
    assert.equal(td.status, 400, JSON.stringify(td.body));
    assert.equal(td.body.error, 'invalid_request');
    assert.match(td.body.error_description, /^bundle_endpoint cannot be used now: .*could not be fetched/);
    // a bundle endpoint that answers with something that is no bundle
    bundle.set({ body: { keys: 'none' } });
    try {
      const junk = await onA.call('POST', '/admin/trust-domains', { name: 'junk.example', bundle_endpoint: bundle.endpoint });
      assert.equal(junk.status, 400, JSON.stringify(junk.body));
      assert.match(junk.body.error_description, /^bundle_endpoint cannot be used now: .*not an acceptable SPIFFE bundle/);
    } finally {
      bundle.set({ body: undefined });
    }

    k8s.discovery.issuer = 'https://impostor.example';
    try {
      const fed = await onB.call('POST', '/admin/federations', { issuer: K8S });
      assert.equal(fed.status, 400, JSON.stringify(fed.body));
      assert.equal(fed.body.error, 'invalid_request');
      assert.match(fed.body.error_description, /^issuer cannot be used now: .*names issuer "https:\/\/impostor\.example", not/);
    } finally {
      delete k8s.discovery.issuer;
    }
    // nothing was stored, nothing audited
    assert.deepEqual(await storage.sql("SELECT name FROM trust_domains WHERE name IN ('down.example', 'junk.example')"), []);
    assert.deepEqual(await storage.sql('SELECT issuer FROM federations'), []);
    assert.deepEqual(await storage.sql("SELECT action FROM audit_log WHERE action = 'federation.add' OR target IN ('down.example', 'junk.example')"), []);
  });

  it('a SPIFFE client needs a configured trust domain, and no active client with an overlapping SPIFFE ID', async () => {
    const unknown = await onA.call('POST', '/admin/clients', { name: 'x', spiffe_id: 'spiffe://elsewhere.org/ns/a' });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error_description, /trust domain elsewhere.org is not configured/);

    const created = await onA.call('POST', '/admin/clients', { name: 'payments', spiffe_id: 'spiffe://example.org/ns/payments/*', scope: 'pay' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.token_endpoint_auth_method, 'spiffe_jwt');
    assert.equal(created.body.spiffe_id, 'spiffe://example.org/ns/payments/*');
    assert.equal(created.body.token_binding, 'dpop');
    assert.equal(created.body.jwks, undefined);

    // on the other instance: an exact ID under the prefix, and a wider prefix, are refused
    for (const id of ['spiffe://example.org/ns/payments/api', 'spiffe://example.org/ns/*']) {
      const clash = await onB.call('POST', '/admin/clients', { name: 'clash', spiffe_id: id });
      assert.equal(clash.status, 400, id);
      assert.match(clash.body.error_description, new RegExp(`overlaps .* of active client ${created.body.client_id}`));
    }
    // a sibling that only shares characters is not under the prefix
    const sibling = await onB.call('POST', '/admin/clients', { name: 'sibling', spiffe_id: 'spiffe://example.org/ns/payments-v2/api' });
    assert.equal(sibling.status, 201, JSON.stringify(sibling.body));

    // keys cannot be set on it: it has none
    const keys = await onA.call('PUT', `/admin/clients/${created.body.client_id}/jwks`, { jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0', kid: 'k' }] } });
    assert.equal(keys.status, 400);
    assert.match(keys.body.error_description, /workload identity \(spiffe_jwt\)/);
  });

  it('two instances racing to create the same SPIFFE binding: exactly one wins', async () => {
    const body = { name: 'race', spiffe_id: 'spiffe://example.org/ns/race/api' };
    const results = await Promise.all([onA.call('POST', '/admin/clients', body), onB.call('POST', '/admin/clients', body), onA.call('POST', '/admin/clients', body)]);
    assert.deepEqual(results.map((r) => r.status).sort(), [201, 400, 400], JSON.stringify(results.map((r) => r.body)));
  });

  it('a federation added on B is listed by A within a second; its clients need it, and identical subjects clash', async () => {
    const before = await onA.call('POST', '/admin/clients', { name: 'k8s', federated_subject: { issuer: K8S, subject: 'system:serviceaccount:p:api' } });
    assert.equal(before.status, 400);
    assert.match(before.body.error_description, /not a configured federation/);

    const res = await onB.call('POST', '/admin/federations', { issuer: K8S, audience: 'sigil-api', max_lifetime_seconds: 600 });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const t0 = Date.now();
    assert.deepEqual({ ...res.body, created_at: undefined, updated_at: undefined }, {
      issuer: K8S, jwks_uri: null, audience: 'sigil-api', max_lifetime_seconds: 600, created_by: 'sigil-admin', created_at: undefined, updated_at: undefined,
    });
    await observedWithin('A lists the federation', t0, PROPAGATION_MS, async () => {
      const seen = await issuers(onA);
      return Array.isArray(seen) && seen.includes(K8S) ? true : JSON.stringify(seen);
    });

    const main = await onA.call('POST', '/admin/clients', { name: 'ci-main', federated_subject: { issuer: K8S, subject: 'repo:o/r' }, required_claims: { ref: 'refs/heads/main' } });
    assert.equal(main.status, 201, JSON.stringify(main.body));
    assert.equal(main.body.token_endpoint_auth_method, 'federated_jwt');
    assert.deepEqual(main.body.federated_subject, { issuer: K8S, subject: 'repo:o/r' });
    assert.deepEqual(main.body.required_claims, { ref: 'refs/heads/main' });
    // another ref is told apart by the claim; no claim at all would match main's tokens too
    const dev = await onA.call('POST', '/admin/clients', { name: 'ci-dev', federated_subject: { issuer: K8S, subject: 'repo:o/r' }, required_claims: { ref: 'refs/heads/dev' } });
    assert.equal(dev.status, 201, JSON.stringify(dev.body));
    const wide = await onB.call('POST', '/admin/clients', { name: 'ci-any', federated_subject: { issuer: K8S, subject: 'repo:o/r' } });
    assert.equal(wide.status, 400);
    assert.match(wide.body.error_description, /overlaps active client/);
  });

  it('removing trust on one instance: the other forgets it within a second, the answer lists the affected clients, both are audited', async () => {
    const clients = (await onA.call('GET', '/admin/clients')).body as Array<{ client_id: string; name: string }>;
    const idsOf = (...wanted: string[]) => clients.filter((c) => wanted.includes(c.name)).map((c) => c.client_id).sort();

    const td = await onB.call('POST', '/admin/trust-domains/remove', { name: 'example.org' });
    assert.equal(td.status, 200, JSON.stringify(td.body));
    const t0 = Date.now();
    assert.equal(td.body.removed.name, 'example.org');
    assert.deepEqual([...td.body.affected_clients].sort(), idsOf('payments', 'sibling', 'race'));
    await observedWithin('A forgets example.org', t0, PROPAGATION_MS, async () => {
      const seen = await names(onA);
      return Array.isArray(seen) && !seen.includes('example.org') ? true : JSON.stringify(seen);
    });

    const fed = await onA.call('POST', '/admin/federations/remove', { issuer: K8S });
    assert.equal(fed.status, 200, JSON.stringify(fed.body));
    const t1 = Date.now();
    assert.deepEqual([...fed.body.affected_clients].sort(), idsOf('ci-main', 'ci-dev'));
    await observedWithin('B forgets the federation', t1, PROPAGATION_MS, async () => {
      const seen = await issuers(onB);
      return Array.isArray(seen) && !seen.includes(K8S) ? true : JSON.stringify(seen);
    });

    const rows = await storage.sql<{ action: string; target: string }>("SELECT action, target FROM audit_log WHERE action LIKE 'trust_domain.%' OR action LIKE 'federation.%' ORDER BY id");
    assert.deepEqual(rows, [
      { action: 'trust_domain.add', target: 'example.org' },
      { action: 'federation.add', target: K8S },
      { action: 'trust_domain.remove', target: 'example.org' },
      { action: 'federation.remove', target: K8S },
    ]);
    // the clients stay (they fail to authenticate, elsewhere): listed, still active
    const payments = (await onA.call('GET', `/admin/clients/${idsOf('payments')[0]}`)).body;
    assert.equal(payments.status, 'active');
  });
});
