// FetchedWorkloadTrust against real HTTPS servers with a test CA and an injected clock: bundles fetched
// on first use and in the background, refreshed per the clamped hint, kept when a refresh fails until
// the staleness bound and then refused (logged once per change), rollbacks refused, removed trust
// domains and federations forgotten at once, federation keys from jwks_uri or OIDC discovery.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, beforeEach, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createLocalJWKSet, jwtVerify, type JWK } from 'jose';
import type { SpiffeBundleSettings } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import type { JwksUriPolicy } from '../../src/outbound/jwks-fetch.js';
import { FetchedWorkloadTrust, trustCandidateProblem, type ListableTrustConfig } from '../../src/workload/trust.js';
import type { Federation, TrustDomain } from '../../src/workload/types.js';
import { testClock, type TestClock } from '../support/clock.js';
import { ROOT } from '../support/server.js';
import {
  createTestCa, forgedJwtSvid, generateSigningKey, issueX509Svid, mintJwtSvid, spiffeX509Authority, startBundleServer, startServiceAccountIssuer, workloadServerEnv,
  type BundleServer, type ServiceAccountIssuer, type TestCa, type TestSigningKey,
} from '../support/workload.js';

const run = promisify(execFile);

/** The trust configuration as trust-admin's store answers it, in memory. */
class MemoryTrustConfig implements ListableTrustConfig {
  readonly domains = new Map<string, TrustDomain>();
  readonly federations = new Map<string, Federation>();
  readonly #listeners: Array<(change: { kind: 'trust-domain' | 'federation'; key: string }) => void> = [];
  listable = false;

  async trustDomain(name: string) { return this.domains.get(name); }
  async federation(issuer: string) { return this.federations.get(issuer); }
  onChange(listener: (change: { kind: 'trust-domain' | 'federation'; key: string }) => void) { this.#listeners.push(listener); }
  get trustDomains(): (() => Promise<TrustDomain[]>) | undefined {
    return this.listable ? async () => [...this.domains.values()] : undefined;
  }

  addDomain(name: string, bundleEndpoint: string, announce = true) {
    this.domains.set(name, { name, bundleEndpoint, createdBy: 'test', createdAt: new Date(), updatedAt: new Date() });
    if (announce) this.#emit('trust-domain', name);
  }
  removeDomain(name: string, announce = true) {
    this.domains.delete(name);
    if (announce) this.#emit('trust-domain', name);
  }
  addFederation(issuer: string, over: Partial<Federation> = {}) {
    this.federations.set(issuer, { issuer, maxLifetimeSeconds: 3600, createdBy: 'test', createdAt: new Date(), updatedAt: new Date(), ...over });
    this.#emit('federation', issuer);
  }
  removeFederation(issuer: string, announce = true) {
    this.federations.delete(issuer);
    if (announce) this.#emit('federation', issuer);
  }
  #emit(kind: 'trust-domain' | 'federation', key: string) {
    for (const l of this.#listeners) l({ kind, key });
  }
}

/** log lines as objects, for checking what is logged (and what never is) */
function capturedLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('debug', stream), lines, raw: () => lines.map((l) => JSON.stringify(l)).join('\n') };
}

const POLICY: JwksUriPolicy = { allowHttpLoopback: false, allowedHosts: ['localhost'], timeoutMs: 3000, maxBytes: 64 * 1024, minCacheSeconds: 60, maxCacheSeconds: 86400 };
const BUNDLES: SpiffeBundleSettings = { refreshMinSeconds: 30, refreshMaxSeconds: 3600, maxStalenessSeconds: 3600 };
const TD = 'example.org';

async function verifies(keys: JWK[], jwt: string): Promise<boolean> {
  try {
    await jwtVerify(jwt, createLocalJWKSet({ keys }), { algorithms: ['ES256', 'EdDSA', 'PS256', 'RS256'] });
    return true;
  } catch {
    return false;
  }
}

describe('FetchedWorkloadTrust: SPIFFE bundles', () => {
  let ca: TestCa;
  let server: BundleServer;
  let k1: TestSigningKey;
  let k2: TestSigningKey;
  let clock: TestClock;
  let config: MemoryTrustConfig;
  let logs: ReturnType<typeof capturedLogger>;
  const trustWith = (bundles: Partial<SpiffeBundleSettings> = {}, policy: Partial<JwksUriPolicy> = {}) =>
    new FetchedWorkloadTrust(config, { ...POLICY, ...policy }, { ...BUNDLES, ...bundles }, logs.log, { ca: ca.certPem, now: clock.now });

  before(async () => {
    ca = createTestCa();
    server = await startBundleServer(ca);
    [k1, k2] = await Promise.all([generateSigningKey('ES256'), generateSigningKey('EdDSA')]);
  });
  after(async () => {
    await server.close();
    ca.close();
  });
  beforeEach(() => {
    server.set({ jwtKeys: [k1, k2], extraKeys: [], sequence: undefined, refreshHint: undefined, status: 200, delayMs: 0, body: undefined, headers: {} });
    clock = testClock(1_800_000_000_000);
    config = new MemoryTrustConfig();
    config.addDomain(TD, server.endpoint);
    logs = capturedLogger();
  });

  it('fetches the bundle on first use over TLS and answers its JWT and X.509 authorities', async () => {
    const authority = spiffeX509Authority(ca, TD);
    server.set({ extraKeys: [authority.bundleKey] });
    const trust = trustWith();
    const before = server.hits();
    const jwt = await trust.jwtAuthorities(TD);
    assert.ok(jwt.ok, JSON.stringify(jwt));
    assert.deepEqual(jwt.value.map((k) => k.kid), [k1.kid, k2.kid]);
    const x509 = await trust.x509Authorities(TD);
    assert.ok(x509.ok);
    assert.equal(x509.value[0]!.fingerprint256, authority.x509.fingerprint256);
    assert.equal(server.hits() - before, 1, 'one fetch serves both');
    const svid = issueX509Svid(ca, authority, `spiffe://${TD}/ns/payments/sa/api`);
    assert.ok(svid.x509.checkIssued(x509.value[0]!) && svid.x509.verify(x509.value[0]!.publicKey), 'an X.509-SVID chains to the authority answered');
    const stranger = issueX509Svid(ca, spiffeX509Authority(ca, 'other.org'), `spiffe://${TD}/x`);
    assert.equal(stranger.x509.verify(x509.value[0]!.publicKey), false);
  });

  it('concurrent first uses share one fetch', async () => {
    const trust = trustWith();
    server.set({ delayMs: 100 });
    const before = server.hits();
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? trust.jwtAuthorities(TD) : trust.x509Authorities(TD))));
    assert.equal(server.hits() - before, 1);
    assert.ok(answers.filter((_, i) => i % 2).every((a) => a.ok));
  });

  it('an endpoint slower than the fetch timeout is a failure, said so', async () => {
    server.set({ delayMs: 2000 });
    const answer = await trustWith({}, { timeoutMs: 200 }).jwtAuthorities(TD);
    assert.match((answer as { problem: string }).problem, /could not be fetched: bundle endpoint did not answer within 200 ms/);
  });

  it('refuses a trust domain that is not configured, without fetching anything', async () => {
    const trust = trustWith();
    const before = server.hits();
    const answer = await trust.jwtAuthorities('other.org');
    assert.deepEqual(answer, { ok: false, problem: 'other.org is not a configured SPIFFE trust domain' });
    assert.equal(server.hits(), before);
  });

  it('says so when the bundle has no authority of the kind asked for', async () => {
    server.set({ jwtKeys: [] });
    const answer = await trustWith().x509Authorities(TD);
    assert.equal(answer.ok, false);
    assert.match((answer as { problem: string }).problem, /has no X.509-SVID authorities/);
    assert.match(((await trustWith().jwtAuthorities(TD)) as { problem: string }).problem, /has no JWT-SVID authorities/);
  });

  it('the check before adding a trust domain accepts a bundle with JWT-SVID or X.509-SVID authorities (mTLS-only domains), fetching once', async () => {
    const check = () => trustCandidateProblem({ kind: 'trust-domain', name: TD, bundleEndpoint: server.endpoint }, POLICY, BUNDLES, logs.log, { ca: ca.certPem, now: clock.now });
    assert.equal(await check(), undefined, 'JWT-SVID authorities only');
    server.set({ jwtKeys: [], extraKeys: [spiffeX509Authority(ca, TD).bundleKey] });
    const before = server.hits();
    assert.equal(await check(), undefined, 'X.509-SVID authorities only');
    assert.equal(server.hits() - before, 1, 'both questions read one fetched bundle');
    server.set({ extraKeys: [] });
    assert.match(String(await check()), /^the SPIFFE bundle of trust domain example.org has no authorities \(keys with use jwt-svid or x509-svid\)$/);
    server.set({ status: 404 });
    assert.match(String(await check()), /could not be fetched/);
  });

  for (const [hint, expected, why] of [
    [5, 30, 'a hint below the minimum waits the minimum'],
    [120, 120, 'a hint within bounds is followed'],
    [100_000, 3600, 'a hint above the maximum waits the maximum'],
    [undefined, 3600, 'no hint: the maximum'],
    [0, 30, 'a hint of 0 does not make Sigil poll in a loop'],
  ] as const) {
    it(`refreshes after the clamped hint: ${why}`, async () => {
      server.set({ refreshHint: hint });
      const trust = trustWith();
      await trust.jwtAuthorities(TD);
      const start = server.hits();
      clock.advance(expected * 1000 - 1);
      await trust.jwtAuthorities(TD);
      await trust.refreshDue();
      assert.equal(server.hits(), start, 'not refreshed before the interval');
      clock.advance(1);
      await trust.jwtAuthorities(TD);
      assert.equal(server.hits(), start + 1, 'refreshed once the interval passed');
    });
  }

  it('a key removed from the bundle stops verifying as soon as the refreshed bundle is seen', async () => {
    server.set({ refreshHint: 60 });
    const trust = trustWith();
    const svid = await mintJwtSvid({ spiffeId: `spiffe://${TD}/ns/payments/sa/api`, aud: 'https://sigil.test', key: k2 });
    const first = await trust.jwtAuthorities(TD);
    assert.ok(first.ok && await verifies(first.value, svid), 'verifies while k2 is in the bundle');
    server.set({ jwtKeys: [k1] });
    clock.advance(59_000);
    const cached = await trust.jwtAuthorities(TD);
    assert.ok(cached.ok && await verifies(cached.value, svid), 'the cached bundle is used until its refresh time');
    clock.advance(1000);
    const refreshed = await trust.jwtAuthorities(TD);
    assert.ok(refreshed.ok);
    assert.deepEqual(refreshed.value.map((k) => k.kid), [k1.kid]);
    assert.equal(await verifies(refreshed.value, svid), false, 'k2 no longer verifies');
  });

  it('forged JWT-SVIDs verify against no bundle key (alg none, HS256 with the public key, another trust domain\'s key)', async () => {
    const keys = await trustWith().jwtAuthorities(TD);
    assert.ok(keys.ok);
    const claims = { spiffeId: `spiffe://${TD}/a`, aud: 'https://sigil.test' };
    const other = await generateSigningKey('ES256');
    for (const forged of [
      forgedJwtSvid.none({ ...claims, kid: k1.kid }),
      await forgedJwtSvid.hs256({ ...claims, key: k1 }),
      await forgedJwtSvid.otherKey({ ...claims, key: other, claimKid: k1.kid }),
    ]) assert.equal(await verifies(keys.value, forged), false);
    assert.equal(await verifies(keys.value, await mintJwtSvid({ ...claims, key: k1 })), true, 'the real one does');
  });

  it('keeps the last good bundle while refreshes fail, until the staleness bound; then fails closed, logging each change once', async () => {
    server.set({ refreshHint: 60 });
    const trust = trustWith({ maxStalenessSeconds: 600 });
    assert.ok((await trust.jwtAuthorities(TD)).ok);
    server.set({ status: 503 });
    clock.advance(60_000);
    const stale = await trust.jwtAuthorities(TD);
    assert.ok(stale.ok, 'a failed refresh keeps the last good bundle');
    assert.deepEqual(stale.value.map((k) => k.kid), [k1.kid, k2.kid]);
    const hitsAfterFailure = server.hits();
    await trust.jwtAuthorities(TD);
    assert.equal(server.hits(), hitsAfterFailure, 'a failing endpoint is retried no sooner than the minimum interval');
    clock.advance(30_000);
    await trust.jwtAuthorities(TD);
    assert.equal(server.hits(), hitsAfterFailure + 1, 'retried after the minimum interval');
    clock.set(1_800_000_000_000 + 60_000 + 600_000 - 1);
    assert.ok((await trust.jwtAuthorities(TD)).ok, 'still within the bound');
    clock.advance(1);
    const closed = await trust.jwtAuthorities(TD);
    assert.equal(closed.ok, false);
    assert.match((closed as { problem: string }).problem, /SPIFFE bundle of trust domain example\.org has not been refreshed since .* past SPIFFE_BUNDLE_MAX_STALENESS \(600 s\): bundle endpoint answered 503/);
    assert.equal((await trust.x509Authorities(TD)).ok, false, 'X.509 authorities fail closed too');
    await trust.jwtAuthorities(TD);
    await trust.refreshDue();
    const warnings = logs.lines.filter((l) => l.level === 'warn').map((l) => l.msg);
    assert.deepEqual(warnings, [
      'SPIFFE bundle refresh failed; the last good bundle is used until the staleness bound',
      'SPIFFE trust domain fails closed: no usable bundle, its SVIDs are refused',
    ], 'one warning per state change');
    server.set({ status: 200 });
    clock.advance(30_000);
    assert.ok((await trust.jwtAuthorities(TD)).ok, 'a successful refresh opens it again');
    assert.ok(logs.lines.some((l) => l.msg === 'SPIFFE bundle refreshed again'));
    const raw = logs.raw();
    for (const k of [k1, k2]) assert.ok(!raw.includes(String(k.publicJwk.x)), 'no key material in logs');
  });

  it('logs the endpoint without its query (it could carry something private)', async () => {
    config.addDomain('query.org', `${server.endpoint}?access=s3cr3t-value`);
    server.set({ status: 500 });
    assert.equal((await trustWith().jwtAuthorities('query.org')).ok, false);
    assert.ok(logs.lines.some((l) => l.trust_domain === 'query.org' && l.endpoint === server.endpoint), 'the failure is logged with the endpoint');
    assert.ok(!logs.raw().includes('s3cr3t-value'));
  });

  it('a bundle that never arrived is refused with the reason, and retried only after the minimum interval', async () => {
    server.set({ status: 404 });
    const trust = trustWith();
    const answer = await trust.jwtAuthorities(TD);
    assert.deepEqual(answer, { ok: false, problem: 'the SPIFFE bundle of trust domain example.org could not be fetched: bundle endpoint answered 404, expected 200' });
    const hits = server.hits();
    server.set({ status: 200 });
    clock.advance(29_999);
    assert.equal((await trust.jwtAuthorities(TD)).ok, false);
    assert.equal(server.hits(), hits);
    clock.advance(1);
    assert.ok((await trust.jwtAuthorities(TD)).ok);
  });

  it('an unacceptable bundle is a failed refresh: the last good one is kept', async () => {
    server.set({ refreshHint: 60 });
    const trust = trustWith({ maxStalenessSeconds: 0 });
    assert.ok((await trust.jwtAuthorities(TD)).ok);
    server.set({ body: { keys: [{ ...k1.publicJwk, use: 'jwt-svid', kid: undefined }] } });
    clock.advance(59_999);
    assert.ok((await trust.jwtAuthorities(TD)).ok);
    clock.advance(1);
    const answer = await trust.jwtAuthorities(TD);
    assert.equal(answer.ok, false, 'with no staleness allowed, the refused refresh closes it at once');
    assert.match((answer as { problem: string }).problem, /not an acceptable SPIFFE bundle: key 0 has use jwt-svid but no kid/);
    server.set({ body: 'not json' });
    clock.advance(30_000);
    assert.match(((await trust.jwtAuthorities(TD)) as { problem: string }).problem, /document is not JSON/);
  });

  it('refuses a rollback (a lower spiffe_sequence), keeps the newer bundle and logs it', async () => {
    server.set({ sequence: 5, refreshHint: 60 });
    const trust = trustWith();
    assert.ok((await trust.jwtAuthorities(TD)).ok);
    server.set({ sequence: 4, jwtKeys: [k2] });
    clock.advance(60_000);
    const kept = await trust.jwtAuthorities(TD);
    assert.ok(kept.ok);
    assert.deepEqual(kept.value.map((k) => k.kid), [k1.kid, k2.kid], 'the newer (sequence 5) bundle is kept');
    assert.ok(logs.lines.some((l) => l.msg === 'SPIFFE bundle rollback refused' && l.sequence === 4 && l.highest === 5));
    server.set({ sequence: 5 });
    clock.advance(30_000);
    const same = await trust.jwtAuthorities(TD);
    assert.ok(same.ok);
    assert.deepEqual(same.value.map((k) => k.kid), [k2.kid], 'the same sequence is no rollback');
    server.set({ sequence: 6, jwtKeys: [k1] });
    clock.advance(60_000);
    const newer = await trust.jwtAuthorities(TD);
    assert.ok(newer.ok);
    assert.deepEqual(newer.value.map((k) => k.kid), [k1.kid]);
  });

  it('a removed trust domain is unknown at once and its bundle dropped (announced or not)', async () => {
    const trust = trustWith();
    assert.ok((await trust.jwtAuthorities(TD)).ok);
    config.removeDomain(TD);
    assert.deepEqual(await trust.jwtAuthorities(TD), { ok: false, problem: 'example.org is not a configured SPIFFE trust domain' });
    const hits = server.hits();
    config.addDomain(TD, server.endpoint);
    assert.ok((await trust.jwtAuthorities(TD)).ok);
    assert.equal(server.hits(), hits + 1, 're-added: fetched anew, nothing kept from before');
    config.removeDomain(TD, false);
    assert.equal((await trust.x509Authorities(TD)).ok, false, 'the configuration answering undefined is enough');
  });

  it('removed and added again between two uses (an admin replacing a compromised domain): fetched anew', async () => {
    const trust = trustWith();
    assert.ok((await trust.jwtAuthorities(TD)).ok);
    config.removeDomain(TD);
    config.addDomain(TD, server.endpoint);
    const hits = server.hits();
    assert.ok((await trust.jwtAuthorities(TD)).ok);
    assert.equal(server.hits(), hits + 1);
  });

  it('a trust domain moved to another endpoint does not keep the old endpoint\'s keys or sequence', async () => {
    const other = await startBundleServer(ca, { jwtKeys: [k2], sequence: 1 });
    try {
      server.set({ sequence: 9 });
      const trust = trustWith();
      assert.ok((await trust.jwtAuthorities(TD)).ok);
      config.addDomain(TD, other.endpoint, false);
      const moved = await trust.jwtAuthorities(TD);
      assert.ok(moved.ok, JSON.stringify(moved));
      assert.deepEqual(moved.value.map((k) => k.kid), [k2.kid]);
    } finally {
      await other.close();
    }
  });

  it('a domain removed while its fetch is in flight is not answered from that fetch', async () => {
    server.set({ delayMs: 300 });
    const trust = trustWith();
    const pending = trust.jwtAuthorities(TD);
    await new Promise((resolve) => setImmediate(resolve));
    config.removeDomain(TD);
    assert.equal((await pending).ok, false);
  });

  it('the background job fetches listed and announced domains before their first use, and refreshes them when due', async () => {
    config.listable = true;
    server.set({ refreshHint: 60 });
    const trust = trustWith();
    const start = server.hits();
    await trust.refreshDue();
    assert.equal(server.hits(), start + 1, 'fetched by the job');
    assert.ok((await trust.jwtAuthorities(TD)).ok);
    assert.equal(server.hits(), start + 1, 'first use served from the job\'s fetch');
    await trust.refreshDue();
    assert.equal(server.hits(), start + 1, 'not due yet');
    clock.advance(60_000);
    await trust.refreshDue();
    assert.equal(server.hits(), start + 2);
    config.domains.clear();
    await trust.refreshDue();
    assert.equal((await trust.jwtAuthorities(TD)).ok, false);

    config.listable = false;
    const failing = trustWith();
    Object.defineProperty(config, 'trustDomains', { configurable: true, get: () => async () => { throw new Error('store down'); } });
    config.addDomain(TD, server.endpoint);
    const beforeFailing = server.hits();
    await failing.refreshDue();
    assert.equal(server.hits(), beforeFailing + 1, 'a store that cannot list does not stop the refresh of known domains');
    delete (config as { trustDomains?: unknown }).trustDomains;

    const unlisted = trustWith();
    config.addDomain('announced.org', server.endpoint);
    const before = server.hits();
    await unlisted.refreshDue();
    assert.equal(server.hits(), before + 1, 'an announced domain is fetched by the next job run');
  });

  it('fetches only through the SSRF rules: internal addresses, plain http and oversized bundles are refused', async () => {
    config.addDomain('private.org', 'https://10.1.2.3/bundle');
    config.addDomain('plain.org', server.endpoint.replace('https:', 'http:'));
    const trust = trustWith();
    assert.match(((await trust.jwtAuthorities('private.org')) as { problem: string }).problem, /bundle endpoint host 10\.1\.2\.3 is a private address; Sigil fetches SPIFFE bundles only from public addresses/);
    assert.match(((await trust.jwtAuthorities('plain.org')) as { problem: string }).problem, /bundle endpoint must use https/);
    assert.match(((await trustWith({}, { allowedHosts: [] }).jwtAuthorities(TD)) as { problem: string }).problem, /resolves to 127\.0\.0\.1, a loopback address/);
    server.set({ body: { keys: [], padding: 'x'.repeat(2000) } });
    assert.match(((await trustWith({}, { maxBytes: 1024 }).jwtAuthorities(TD)) as { problem: string }).problem, /bundle endpoint document is larger than 1024 bytes/);
  });

  it('trusts only the CA it is given: another CA\'s server certificate is refused', async () => {
    const stranger = createTestCa('stranger CA');
    try {
      const trust = new FetchedWorkloadTrust(config, POLICY, BUNDLES, logs.log, { ca: stranger.certPem, now: clock.now });
      assert.match(((await trust.jwtAuthorities(TD)) as { problem: string }).problem, /TLS certificate is not valid for localhost/);
    } finally {
      stranger.close();
    }
  });

  it('a Sigil child process trusts the test CA through NODE_EXTRA_CA_CERTS (workloadServerEnv)', async () => {
    const script = `
      const { boundedGet } = await import(${JSON.stringify(path.join(ROOT, 'dist/src/outbound/bounded-fetch.js'))});
      const policy = { allowHttpLoopback: false, allowedHosts: [process.env.JWKS_URI_ALLOWED_HOSTS], timeoutMs: 5000, maxBytes: 65536 };
      const dns = await import('node:dns/promises');
      try {
        const a = await boundedGet(${JSON.stringify(server.endpoint)}, { policy, purpose: { field: 'bundle endpoint', content: 'bundles' }, resolve: (h) => dns.lookup(h, { all: true }), accept: 'application/json', userAgent: 't' });
        console.log('ok ' + a.body.length);
      } catch (err) { console.log('refused ' + err.message); }`;
    const runWith = async (env: Record<string, string>) => (await run(process.execPath, ['--input-type=module', '-e', script], { env: { PATH: process.env.PATH, ...env } })).stdout.trim();
    assert.match(await runWith(workloadServerEnv(ca)), /^ok \d+$/);
    assert.match(await runWith({ JWKS_URI_ALLOWED_HOSTS: 'localhost' }), /^refused bundle endpoint TLS certificate is not valid/);
  });
});

describe('FetchedWorkloadTrust: federations', () => {
  let ca: TestCa;
  let k8s: ServiceAccountIssuer;
  let clock: TestClock;
  let config: MemoryTrustConfig;
  let logs: ReturnType<typeof capturedLogger>;
  const trustWith = (policy: Partial<JwksUriPolicy> = {}) => new FetchedWorkloadTrust(config, { ...POLICY, ...policy }, BUNDLES, logs.log, { ca: ca.certPem, now: clock.now });

  before(async () => {
    ca = createTestCa();
    k8s = await startServiceAccountIssuer(ca);
  });
  after(async () => {
    await k8s.close();
    ca.close();
  });
  beforeEach(() => {
    for (const m of Object.keys(k8s.discovery)) delete k8s.discovery[m];
    k8s.status.discovery = 200;
    k8s.status.jwks = 200;
    clock = testClock(1_800_000_000_000);
    config = new MemoryTrustConfig();
    logs = capturedLogger();
  });

  it('finds the keys by OIDC discovery when no jwks_uri is configured, and they verify a service-account token', async () => {
    config.addFederation(k8s.issuer);
    const trust = trustWith();
    assert.equal((await trust.federation(k8s.issuer))?.issuer, k8s.issuer);
    const d = k8s.hits.discovery;
    const keys = await trust.federationKeys(k8s.issuer, undefined);
    assert.ok(keys.ok, JSON.stringify(keys));
    assert.equal(k8s.hits.discovery, d + 1);
    const token = await k8s.mintServiceAccountToken({ sub: 'system:serviceaccount:payments:api', aud: 'https://sigil.test' });
    assert.ok(await verifies(keys.value, token));
    await trust.federationKeys(k8s.issuer, k8s.keys.at(-1)!.kid);
    assert.equal(k8s.hits.discovery, d + 1, 'discovery is cached');
  });

  it('uses a configured jwks_uri without discovery', async () => {
    config.addFederation(k8s.issuer, { jwksUri: k8s.jwksUri });
    const d = k8s.hits.discovery;
    assert.ok((await trustWith().federationKeys(k8s.issuer, undefined)).ok);
    assert.equal(k8s.hits.discovery, d);
  });

  it('refuses a discovery document naming another issuer (exact match, not even a trailing slash)', async () => {
    config.addFederation(k8s.issuer);
    for (const other of ['https://evil.example', `${k8s.issuer}/`]) {
      k8s.discovery.issuer = other;
      const answer = await trustWith().federationKeys(k8s.issuer, undefined);
      assert.equal(answer.ok, false);
      assert.match((answer as { problem: string }).problem, /openid-configuration names issuer .* not .*; they must be equal/);
    }
  });

  it('refuses a discovered jwks_uri that breaks the destination rules', async () => {
    config.addFederation(k8s.issuer);
    for (const [uri, problem] of [
      ['https://169.254.169.254/keys', /jwks_uri host 169\.254\.169\.254 is a link-local address/],
      [k8s.jwksUri.replace('https:', 'http:'), /jwks_uri must use https/],
      [42, /jwks_uri must be an absolute https URL/],
      [`${k8s.jwksUri}#x`, /must not have a fragment/],
    ] as const) {
      k8s.discovery.jwks_uri = uri;
      const answer = await trustWith().federationKeys(k8s.issuer, undefined);
      assert.match((answer as { problem: string }).problem, /openid-configuration has a jwks_uri Sigil will not fetch/);
      assert.match((answer as { problem: string }).problem, problem);
    }
  });

  it('a failing discovery is refused and retried only after the minimum interval', async () => {
    config.addFederation(k8s.issuer);
    k8s.status.discovery = 500;
    const trust = trustWith();
    assert.match(((await trust.federationKeys(k8s.issuer, undefined)) as { problem: string }).problem, /discovery document of federation .* could not be used: openid-configuration answered 500/);
    const d = k8s.hits.discovery;
    k8s.status.discovery = 200;
    assert.equal((await trust.federationKeys(k8s.issuer, undefined)).ok, false);
    assert.equal(k8s.hits.discovery, d);
    clock.advance(60_000);
    assert.ok((await trust.federationKeys(k8s.issuer, undefined)).ok);
  });

  it('an unknown kid triggers at most one refetch per minimum interval; a rotated key is then found', async () => {
    config.addFederation(k8s.issuer, { jwksUri: k8s.jwksUri });
    const trust = trustWith();
    assert.ok((await trust.federationKeys(k8s.issuer, undefined)).ok);
    const fetched = k8s.hits.jwks;
    const rotated = await k8s.rotate();
    for (let i = 0; i < 5; i++) {
      const answer = await trust.federationKeys(k8s.issuer, rotated.kid);
      assert.ok(answer.ok);
      assert.ok(!answer.value.some((k) => k.kid === rotated.kid));
      await trust.federationKeys(k8s.issuer, `unknown-${i}`);
    }
    assert.equal(k8s.hits.jwks, fetched, 'no refetch within the minimum interval');
    clock.advance(60_000);
    assert.ok((await trust.federationKeys(k8s.issuer, k8s.keys[0]!.kid)).ok);
    assert.equal(k8s.hits.jwks, fetched, 'a known kid is served from the cache (max-age=3600)');
    const found = await trust.federationKeys(k8s.issuer, rotated.kid);
    assert.ok(found.ok && found.value.some((k) => k.kid === rotated.kid));
    assert.equal(k8s.hits.jwks, fetched + 1);
    await trust.federationKeys(k8s.issuer, 'still-unknown');
    assert.equal(k8s.hits.jwks, fetched + 1);
  });

  it('a removed federation is unknown at once and its cached keys and discovery dropped', async () => {
    config.addFederation(k8s.issuer);
    const trust = trustWith();
    assert.ok((await trust.federationKeys(k8s.issuer, undefined)).ok);
    config.removeFederation(k8s.issuer);
    assert.equal(await trust.federation(k8s.issuer), undefined);
    assert.deepEqual(await trust.federationKeys(k8s.issuer, undefined), { ok: false, problem: `${k8s.issuer} is not a configured federation` });
    const [d, j] = [k8s.hits.discovery, k8s.hits.jwks];
    config.addFederation(k8s.issuer);
    assert.ok((await trust.federationKeys(k8s.issuer, undefined)).ok);
    assert.deepEqual([k8s.hits.discovery, k8s.hits.jwks], [d + 1, j + 1], 're-added: discovered and fetched anew');
    config.removeFederation(k8s.issuer, false);
    assert.equal((await trust.federationKeys(k8s.issuer, undefined)).ok, false, 'the configuration answering undefined is enough');
  });

  it('removed and added again between two uses: discovered and fetched anew', async () => {
    config.addFederation(k8s.issuer);
    const trust = trustWith();
    assert.ok((await trust.federationKeys(k8s.issuer, undefined)).ok);
    config.removeFederation(k8s.issuer);
    config.addFederation(k8s.issuer);
    const [d, j] = [k8s.hits.discovery, k8s.hits.jwks];
    assert.ok((await trust.federationKeys(k8s.issuer, undefined)).ok);
    assert.deepEqual([k8s.hits.discovery, k8s.hits.jwks], [d + 1, j + 1]);
  });

  it('federation keys must pass the client-key rules', async () => {
    config.addFederation(k8s.issuer, { jwksUri: `${k8s.issuer}/.well-known/openid-configuration` });
    const answer = await trustWith().federationKeys(k8s.issuer, undefined);
    assert.match((answer as { problem: string }).problem, /could not be fetched: jwks_uri document is not a JWKS/);
  });
});
