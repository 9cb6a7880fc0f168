// `sigil trust-domains`, `sigil federations` and workload-bound `sigil clients create` against a real
// server, run as a child process exactly as an admin runs them. The tests build on each other, in order.
// The server fetches what it is told to trust once before adding it: the trust domain's bundle
// endpoint and the federations' issuers are test servers over HTTPS (the suite's test CA).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../support/server.js';
import {
  createTestCa, generateSigningKey, startBundleServer, startServiceAccountIssuer, workloadServerEnv,
  type BundleServer, type ServiceAccountIssuer, type TestCa,
} from '../support/workload.js';
import { assertFailure, initialisedCliWorld, jsonOf, sigil, type CliOptions, type CliWorld } from './harness.js';

describe('sigil CLI: trust domains, federations and workload-bound clients', () => {
  let world: CliWorld;
  let opts: CliOptions;
  let certFile: string;
  let keyFile: string;
  const ids: Record<string, string> = {};
  let ca: TestCa;
  let bundle: BundleServer;
  /** stand-ins for a Kubernetes API server and for GitHub Actions' issuer (OIDC discovery + JWKS) */
  let k8s: ServiceAccountIssuer;
  let github: ServiceAccountIssuer;
  let K8S: string;
  let GITHUB: string;

  before(async () => {
    ca = createTestCa();
    [bundle, k8s, github] = await Promise.all([
      generateSigningKey().then((key) => startBundleServer(ca, { jwtKeys: [key] })), startServiceAccountIssuer(ca), startServiceAccountIssuer(ca),
    ]);
    K8S = k8s.issuer;
    GITHUB = github.issuer;
    world = await initialisedCliWorld('workload', workloadServerEnv(ca));
    opts = world.opts;
    certFile = path.join(world.work.dir, 'client.crt');
    keyFile = path.join(world.work.dir, 'client.key');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile,
      '-days', '1', '-subj', '/CN=cli-self-signed'], { stdio: 'ignore' });
  });
  after(async () => {
    await world?.close();
    await Promise.all([bundle?.close(), k8s?.close(), github?.close()]);
    ca?.close();
  });

  it('help of every new command, with the --max-lifetime bounds', async () => {
    for (const words of [['trust-domains', 'add'], ['trust-domains', 'list'], ['trust-domains', 'remove'], ['federations', 'add'], ['federations', 'list'], ['federations', 'remove']]) {
      const run = await sigil([...words, '--help'], opts);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`^Usage: sigil ${words.join(' ')}`));
    }
    const fed = await sigil(['federations', 'add', '--help'], opts);
    assert.match(fed.stdout, /default\s+3600, from 60 to 86400/);
    const create = await sigil(['clients', 'create', '--help'], opts);
    for (const option of ['--spiffe-id', '--federated-subject ISSUER SUBJECT', '--require-claim', '--tls-subject-dn', '--tls-san-dns', '--tls-san-ip', '--self-signed-cert-file', '--token-binding']) {
      assert.ok(create.stdout.includes(option), option);
    }
    const top = await sigil(['--help'], opts);
    for (const command of ['trust-domains add DOMAIN', 'trust-domains remove DOMAIN', 'federations add', 'federations remove ISSUER']) assert.ok(top.stdout.includes(command), command);
  });

  it('usage errors are refused locally with exit 2', async () => {
    assertFailure(await sigil(['trust-domains', 'add', 'Example.org', '--bundle-endpoint', 'https://a.example/b'], opts), 2, /DOMAIN: .*lowercase/);
    assertFailure(await sigil(['trust-domains', 'add', 'example.org'], opts), 2, /--bundle-endpoint is required/);
    assertFailure(await sigil(['federations', 'add', '--issuer', K8S, '--max-lifetime', '59'], opts), 2, /--max-lifetime must be a whole number of seconds from 60 to 86400/);
    assertFailure(await sigil(['federations', 'add', '--issuer', K8S, '--max-lifetime', '1h'], opts), 2, /--max-lifetime/);
    assertFailure(await sigil(['federations', 'add'], opts), 2, /--issuer is required/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--federated-subject', K8S], opts), 2, /takes two values: ISSUER SUBJECT/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--spiffe-id', 'spiffe://e.org/a', 'stray'], opts), 2, /unexpected argument "stray"/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--spiffe-id', 'spiffe://e.org/a', '--tls-san-dns', 'a.example'], opts), 2, /exactly one credential.*--spiffe-id and --tls-san-dns/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x'], opts), 2, /exactly one credential/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--spiffe-id', 'spiffe://e.org'], opts), 2, /--spiffe-id: .*has a path/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--spiffe-id', 'spiffe://e.org/a', '--require-claim', 'a=b'], opts), 2, /--require-claim goes with --federated-subject only/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--federated-subject', K8S, 's', '--require-claim', 'novalue'], opts), 2, /NAME=VALUE/);
    assertFailure(await sigil(['clients', 'create', '--name', 'x', '--spiffe-id', 'spiffe://e.org/a', '--token-binding', 'bearer'], opts), 2, /--token-binding must be "dpop" or "mtls"/);
    // a file with the private key next to the certificate: nothing is sent
    const both = path.join(world.work.dir, 'both.pem');
    await writeFile(both, `${await readFile(certFile, 'utf8')}${await readFile(keyFile, 'utf8')}`);
    const run = await sigil(['clients', 'create', '--name', 'x', '--self-signed-cert-file', both], opts);
    assertFailure(run, 2, /holds a private key/);
    assert.ok(!run.stderr.includes('PRIVATE KEY-----\n'), 'the key is not echoed');
  });

  it('trust-domains add, list and a SPIFFE client bound to it', async () => {
    const added = jsonOf(await sigil(['trust-domains', 'add', 'example.org', '--bundle-endpoint', bundle.endpoint, '--json'], opts));
    assert.equal(added.name, 'example.org');
    assert.equal(added.bundle_endpoint, bundle.endpoint);
    const list = jsonOf(await sigil(['trust-domains', 'list', '--json'], opts));
    assert.deepEqual(list.map((t: { name: string }) => t.name), ['example.org']);
    const human = await sigil(['trust-domains', 'list'], opts);
    assert.match(human.stdout, new RegExp(`^NAME\\s+BUNDLE_ENDPOINT\\nexample\\.org\\s+${bundle.endpoint.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\n$`));

    const client = jsonOf(await sigil(['clients', 'create', '--name', 'payments', '--spiffe-id', 'spiffe://example.org/ns/payments/sa/api', '--scope', 'pay', '--json'], opts));
    ids.spiffe = client.client_id;
    assert.equal(client.token_endpoint_auth_method, 'spiffe_jwt');
    assert.equal(client.spiffe_id, 'spiffe://example.org/ns/payments/sa/api');
    assert.equal(client.token_binding, 'dpop');
    const shown = await sigil(['clients', 'show', client.client_id], opts);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /auth_method\s+spiffe_jwt/);
    assert.match(shown.stdout, /spiffe_id\s+spiffe:\/\/example\.org\/ns\/payments\/sa\/api/);
    assert.match(shown.stdout, /keys\s+- \(a workload identity, no registered keys\)/);
    assert.match((await sigil(['clients', 'list'], opts)).stdout, new RegExp(`${client.client_id}\\s+active\\s+payments\\s+pay\\s+spiffe_jwt spiffe://example\\.org/ns/payments/sa/api\\n`));

    // a bundle endpoint that does not answer: refused at add with the server's reason, exit 1
    assertFailure(await sigil(['trust-domains', 'add', 'down.example', '--bundle-endpoint', `https://localhost:${await freePort()}/bundle`], opts), 1,
      /bundle_endpoint cannot be used now: the SPIFFE bundle of trust domain down\.example could not be fetched/);

    // overlapping, and an unconfigured trust domain: the server's reasons, exit 1
    assertFailure(await sigil(['clients', 'create', '--name', 'wide', '--spiffe-id', 'spiffe://example.org/ns/payments/*'], opts), 1, /overlaps the SPIFFE ID .* of active client/);
    assertFailure(await sigil(['clients', 'create', '--name', 'other', '--spiffe-id', 'spiffe://other.org/x'], opts), 1, /trust domain other\.org is not configured/);
    // no keys to set on it
    const jwks = path.join(world.work.dir, 'k.json');
    await writeFile(jwks, JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0', kid: 'k' }] }));
    assertFailure(await sigil(['clients', 'keys', 'set', client.client_id, '--jwks-file', jwks], opts), 1, /authenticates with a workload identity \(spiffe_jwt\)/);
  });

  it('federations add with every flag, list, and federated clients with required claims', async () => {
    const added = jsonOf(await sigil(['federations', 'add', '--issuer', K8S, '--jwks-uri', `${K8S}/openid/v1/jwks`, '--audience', 'sigil', '--max-lifetime', '600', '--json'], opts));
    assert.deepEqual({ issuer: added.issuer, jwks_uri: added.jwks_uri, audience: added.audience, max_lifetime_seconds: added.max_lifetime_seconds },
      { issuer: K8S, jwks_uri: `${K8S}/openid/v1/jwks`, audience: 'sigil', max_lifetime_seconds: 600 });
    const gh = jsonOf(await sigil(['federations', 'add', '--issuer', GITHUB, '--json'], opts));
    assert.equal(gh.jwks_uri, null, 'discovery');
    assert.equal(gh.audience, null);
    assert.equal(gh.max_lifetime_seconds, 3600, 'the default');
    const list = jsonOf(await sigil(['federations', 'list', '--json'], opts));
    assert.deepEqual(list.map((f: { issuer: string }) => f.issuer).sort(), [K8S, GITHUB].sort());
    assert.match((await sigil(['federations', 'list'], opts)).stdout, /\(discovery\)\s+\(issuer\)\s+3600/);

    const k8s = jsonOf(await sigil(['clients', 'create', '--name', 'k8s-api', '--federated-subject', K8S, 'system:serviceaccount:payments:api', '--json'], opts));
    ids.k8s = k8s.client_id;
    assert.equal(k8s.token_endpoint_auth_method, 'federated_jwt');
    assert.deepEqual(k8s.federated_subject, { issuer: K8S, subject: 'system:serviceaccount:payments:api' });
    const ci = jsonOf(await sigil(['clients', 'create', '--name', 'ci', '--federated-subject', GITHUB, 'repo:org/app:ref:refs/heads/main',
      '--require-claim', 'repository=org/app', '--require-claim', 'ref=refs/heads/main', '--json'], opts));
    ids.ci = ci.client_id;
    assert.deepEqual(ci.required_claims, { repository: 'org/app', ref: 'refs/heads/main' });
    // (in the order Postgres keeps them)
    assert.match((await sigil(['clients', 'show', ci.client_id], opts)).stdout, /required_claims\s+(ref=refs\/heads\/main, repository=org\/app|repository=org\/app, ref=refs\/heads\/main)\n/);
    assertFailure(await sigil(['clients', 'create', '--name', 'dup', '--federated-subject', K8S, 'system:serviceaccount:payments:api'], opts), 1, /overlaps active client/);
    assertFailure(await sigil(['clients', 'create', '--name', 'nofed', '--federated-subject', 'https://gitlab.example', 'x'], opts), 1, /not a configured federation/);
  });

  it('certificate clients: TLS SAN with mTLS binding, self-signed certificate thumbprints', async () => {
    const tls = jsonOf(await sigil(['clients', 'create', '--name', 'mtls', '--tls-san-dns', 'api.example.org', '--token-binding', 'mtls', '--json'], opts));
    assert.equal(tls.token_endpoint_auth_method, 'tls_client_auth');
    assert.equal(tls.tls_client_auth_san_dns, 'api.example.org');
    assert.equal(tls.token_binding, 'mtls');
    assert.equal(tls.dpop, 'optional');
    assert.match((await sigil(['clients', 'show', tls.client_id], opts)).stdout, /token_binding\s+mtls/);
    const dn = jsonOf(await sigil(['clients', 'create', '--name', 'dn', '--tls-subject-dn', 'CN=api,O=Example', '--json'], opts));
    assert.equal(dn.tls_client_auth_subject_dn, 'CN=api,O=Example');
    assertFailure(await sigil(['clients', 'create', '--name', 'fed-mtls', '--federated-subject', K8S, 'other', '--token-binding', 'mtls'], opts), 1, /token_binding "mtls" needs a client that presents a certificate/);

    const self = jsonOf(await sigil(['clients', 'create', '--name', 'self', '--self-signed-cert-file', certFile, '--json'], opts));
    const expected = createHash('sha256').update(new X509Certificate(await readFile(certFile)).raw).digest('base64url');
    assert.equal(self.token_endpoint_auth_method, 'self_signed_tls_client_auth');
    assert.deepEqual(self.self_signed_certificate_thumbprints, [expected]);
  });

  it('remove prints what was removed and the clients that relied on it', async () => {
    const td = jsonOf(await sigil(['trust-domains', 'remove', 'example.org', '--json'], opts));
    assert.equal(td.removed.name, 'example.org');
    assert.deepEqual(td.affected_clients, [ids.spiffe]);
    const fed = await sigil(['federations', 'remove', K8S], opts);
    assert.equal(fed.code, 0, fed.stderr);
    assert.match(fed.stdout, /Federation removed/);
    assert.ok(fed.stdout.includes(`  ${ids.k8s}\n`), fed.stdout);
    assert.deepEqual(jsonOf(await sigil(['federations', 'list', '--json'], opts)).map((f: { issuer: string }) => f.issuer), [GITHUB]);
    assertFailure(await sigil(['trust-domains', 'remove', 'example.org'], opts), 1, /trust domain "example.org" is not configured/);
    assertFailure(await sigil(['federations', 'remove', K8S], opts), 1, /is not configured/);
    // --json: exactly one document
    const none = jsonOf(await sigil(['federations', 'remove', GITHUB, '--json'], opts));
    assert.deepEqual(none.affected_clients, [ids.ci]);
  });
});
