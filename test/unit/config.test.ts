import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';

const refused = (env: Record<string, string>, pattern: RegExp) =>
  assert.throws(() => loadConfig(env), (err: Error) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.name, 'ConfigError');
    assert.match(err.message, pattern);
    return true;
  });

describe('loadConfig', () => {
  it('has sensible defaults for an empty environment', () => {
    const c = loadConfig({});
    assert.deepEqual(c, {
      port: 3000,
      host: undefined,
      issuer: 'http://localhost:3000',
      databaseUrl: undefined,
      databaseDirectUrl: undefined,
      redisUrl: undefined,
      redisCluster: undefined,
      redisPrefix: 'sigil:',
      dataDir: path.resolve('./data'),
      accessTokenTtl: 300,
      refreshTokenTtl: 86400,
      maxDelegationDepth: 5,
      logLevel: 'info',
      signingAlg: 'ES256',
      dpopRequireNonce: false,
      jwksMaxAgeSeconds: 300,
      statusListTtlSeconds: 30,
      jwksUri: { allowHttpLoopback: false, allowedHosts: [], timeoutMs: 3000, maxBytes: 65536, minCacheSeconds: 60, maxCacheSeconds: 86400 },
      kek: undefined,
      keysDir: path.resolve('./keys'),
      assertionAudTokenEndpoint: false,
      svidMaxLifetimeSeconds: 900,
      http: { headersTimeoutMs: 5000, requestTimeoutMs: 10_000, keepAliveTimeoutMs: 5000, maxConnections: 10_000 },
      statusStreams: { max: 5000, perAddress: 32, lifetimeSeconds: 600 },
      metrics: { port: undefined, host: '127.0.0.1', token: undefined, clientIds: [] },
      spiffeBundles: { refreshMinSeconds: 30, refreshMaxSeconds: 3600, maxStalenessSeconds: 3600 },
      tls: undefined,
      clientCertificates: { caFile: undefined, proxyHeader: undefined, trustedProxies: [], mtlsBaseUrl: undefined },
    });
  });

  it('SPIFFE_BUNDLE_*: refresh bounds and staleness, checked', () => {
    assert.deepEqual(loadConfig({ SPIFFE_BUNDLE_REFRESH_MIN: '10', SPIFFE_BUNDLE_REFRESH_MAX: '600', SPIFFE_BUNDLE_MAX_STALENESS: '0' }).spiffeBundles,
      { refreshMinSeconds: 10, refreshMaxSeconds: 600, maxStalenessSeconds: 0 });
    refused({ SPIFFE_BUNDLE_REFRESH_MIN: '120', SPIFFE_BUNDLE_REFRESH_MAX: '60' }, /SPIFFE_BUNDLE_REFRESH_MAX \(60\) must not be below SPIFFE_BUNDLE_REFRESH_MIN \(120\)/);
    refused({ SPIFFE_BUNDLE_REFRESH_MIN: '0' }, /SPIFFE_BUNDLE_REFRESH_MIN must be between 1 and 3600, got 0/);
    refused({ SPIFFE_BUNDLE_REFRESH_MAX: '86401' }, /SPIFFE_BUNDLE_REFRESH_MAX must be between 1 and 86400/);
    refused({ SPIFFE_BUNDLE_MAX_STALENESS: '-1' }, /SPIFFE_BUNDLE_MAX_STALENESS must be a whole number/);
  });

  it('TLS: both files or neither, an https ISSUER (the default becomes https), the client CA file resolved', () => {
    const c = loadConfig({ TLS_CERT_FILE: 'tls/cert.pem', TLS_KEY_FILE: 'tls/key.pem', TLS_CLIENT_CA_FILE: 'tls/clients.pem', PORT: '8443' });
    assert.deepEqual(c.tls, { certFile: path.resolve('tls/cert.pem'), keyFile: path.resolve('tls/key.pem') });
    assert.equal(c.clientCertificates.caFile, path.resolve('tls/clients.pem'));
    assert.equal(c.issuer, 'https://localhost:8443');
    refused({ TLS_CERT_FILE: 'c.pem' }, /TLS_CERT_FILE and TLS_KEY_FILE go together/);
    refused({ TLS_KEY_FILE: 'k.pem' }, /TLS_CERT_FILE and TLS_KEY_FILE go together/);
    refused({ TLS_CERT_FILE: 'c.pem', TLS_KEY_FILE: 'k.pem', ISSUER: 'http://auth.example.com' }, /ISSUER must be https when Sigil terminates TLS/);
    refused({ TLS_CLIENT_CA_FILE: 'clients.pem' }, /TLS_CLIENT_CA_FILE needs a source of client certificates/);
    assert.equal(loadConfig({ TLS_CLIENT_CA_FILE: 'clients.pem', TLS_CLIENT_CERT_HEADER: 'X-Client-Cert', TLS_TRUSTED_PROXIES: '10.0.0.1' }).clientCertificates.caFile, path.resolve('clients.pem'));
  });

  it('TLS_CLIENT_CERT_HEADER and TLS_TRUSTED_PROXIES: together, a header name of its own, valid ranges', () => {
    const c = loadConfig({ TLS_CLIENT_CERT_HEADER: 'X-Client-Cert', TLS_TRUSTED_PROXIES: '10.0.0.0/8, ::1, 192.0.2.7' });
    assert.equal(c.clientCertificates.proxyHeader, 'x-client-cert');
    assert.deepEqual(c.clientCertificates.trustedProxies, ['10.0.0.0/8', '::1', '192.0.2.7']);
    refused({ TLS_CLIENT_CERT_HEADER: 'X-Client-Cert' }, /needs TLS_TRUSTED_PROXIES/);
    refused({ TLS_TRUSTED_PROXIES: '10.0.0.0/8' }, /only used with TLS_CLIENT_CERT_HEADER/);
    refused({ TLS_CLIENT_CERT_HEADER: 'X-Client-Cert', TLS_TRUSTED_PROXIES: '10.0.0.0/33' }, /TLS_TRUSTED_PROXIES must be a comma-separated list/);
    refused({ TLS_CLIENT_CERT_HEADER: 'X-Client-Cert', TLS_TRUSTED_PROXIES: 'proxy.internal' }, /TLS_TRUSTED_PROXIES must be a comma-separated list/);
    refused({ TLS_CLIENT_CERT_HEADER: 'Authorization', TLS_TRUSTED_PROXIES: '10.0.0.1' }, /header name of its own/);
    refused({ TLS_CLIENT_CERT_HEADER: 'X Client', TLS_TRUSTED_PROXIES: '10.0.0.1' }, /header name of its own/);
  });

  it('MTLS_BASE_URL: an https origin other than ISSUER, with a source of certificates', () => {
    const proxy = { TLS_CLIENT_CERT_HEADER: 'X-Client-Cert', TLS_TRUSTED_PROXIES: '10.0.0.1', ISSUER: 'https://auth.example.com' };
    assert.equal(loadConfig({ ...proxy, MTLS_BASE_URL: 'https://mtls.auth.example.com' }).clientCertificates.mtlsBaseUrl, 'https://mtls.auth.example.com');
    refused({ ...proxy, MTLS_BASE_URL: 'http://mtls.auth.example.com' }, /MTLS_BASE_URL must use https:/);
    refused({ ...proxy, MTLS_BASE_URL: 'https://mtls.auth.example.com/x' }, /must be an origin/);
    refused({ ...proxy, MTLS_BASE_URL: 'https://auth.example.com' }, /MTLS_BASE_URL is ISSUER/);
    refused({ ISSUER: 'https://auth.example.com', MTLS_BASE_URL: 'https://mtls.auth.example.com' }, /needs a source of client certificates/);
  });

  it('ASSERTION_AUD_TOKEN_ENDPOINT: false by default, true or false only', () => {
    assert.equal(loadConfig({ ASSERTION_AUD_TOKEN_ENDPOINT: 'true' }).assertionAudTokenEndpoint, true);
    assert.equal(loadConfig({ ASSERTION_AUD_TOKEN_ENDPOINT: 'false' }).assertionAudTokenEndpoint, false);
    assert.equal(loadConfig({ ASSERTION_AUD_TOKEN_ENDPOINT: '' }).assertionAudTokenEndpoint, false);
    refused({ ASSERTION_AUD_TOKEN_ENDPOINT: 'yes' }, /ASSERTION_AUD_TOKEN_ENDPOINT must be one of true, false, got "yes"/);
  });

  it('treats empty strings as unset', () => {
    const c = loadConfig({ PORT: '', ISSUER: '', ACCESS_TOKEN_TTL: '', LOG_LEVEL: '', DATABASE_URL: '', REDIS_URL: '' });
    assert.equal(c.port, 3000);
    assert.equal(c.issuer, 'http://localhost:3000');
    assert.equal(c.accessTokenTtl, 300);
    assert.equal(c.databaseUrl, undefined);
  });

  it('reads the environment only from its argument', () => {
    const before = process.env.PORT;
    process.env.PORT = '4567';
    try {
      assert.equal(loadConfig({}).port, 3000);
    } finally {
      if (before === undefined) delete process.env.PORT;
      else process.env.PORT = before;
    }
  });

  it('derives the default ISSUER from PORT', () => {
    assert.equal(loadConfig({ PORT: '8080' }).issuer, 'http://localhost:8080');
    assert.equal(loadConfig({ PORT: '8080' }).port, 8080);
  });

  it('accepts an explicit origin as ISSUER, and every other setting', () => {
    const c = loadConfig({
      ISSUER: 'https://auth.example.com', PORT: '9000', HOST: '127.0.0.1', DATABASE_URL: 'postgres://u@db:5432/sigil',
      REDIS_URL: 'rediss://cache:6380/1', REDIS_PREFIX: 'prod:', DATA_DIR: '/var/lib/sigil', ACCESS_TOKEN_TTL: '3600',
      REFRESH_TOKEN_TTL: '60', LOG_LEVEL: 'debug', SIGNING_ALG: 'EdDSA', DPOP_NONCE: 'required', JWKS_MAX_AGE: '0',
    });
    assert.equal(c.issuer, 'https://auth.example.com');
    assert.equal(c.port, 9000);
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.databaseUrl, 'postgres://u@db:5432/sigil');
    assert.equal(c.redisUrl, 'rediss://cache:6380/1');
    assert.equal(c.redisPrefix, 'prod:');
    assert.equal(c.dataDir, '/var/lib/sigil');
    assert.equal(c.accessTokenTtl, 3600);
    assert.equal(c.refreshTokenTtl, 60);
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.signingAlg, 'EdDSA');
    assert.equal(c.dpopRequireNonce, true);
    assert.equal(c.jwksMaxAgeSeconds, 0);
    assert.equal(loadConfig({ DATABASE_URL: 'postgresql://u@db/sigil' }).databaseUrl, 'postgresql://u@db/sigil');
    assert.equal(loadConfig({ ISSUER: 'https://auth.example.com:8443' }).issuer, 'https://auth.example.com:8443');
  });

  it('refuses an ISSUER with a path, a trailing slash, a query or a fragment', () => {
    refused({ ISSUER: 'https://auth.example.com/' }, /ISSUER must be an origin without path or trailing slash/);
    refused({ ISSUER: 'https://auth.example.com/sigil' }, /ISSUER.*"https:\/\/auth\.example\.com\/sigil"/);
    refused({ ISSUER: 'https://auth.example.com/sigil/' }, /ISSUER/);
    refused({ ISSUER: 'https://auth.example.com?x=1' }, /ISSUER/);
    refused({ ISSUER: 'https://auth.example.com#frag' }, /ISSUER/);
  });

  it('refuses an ISSUER that is not an http(s) URL', () => {
    refused({ ISSUER: 'auth.example.com' }, /ISSUER is not a URL/);
    refused({ ISSUER: 'ftp://auth.example.com' }, /ISSUER must use http: or https:/);
  });

  it('MAX_DELEGATION_DEPTH: 1 to 10 (the depth every chain check reads), default 5', () => {
    assert.equal(loadConfig({}).maxDelegationDepth, 5);
    assert.equal(loadConfig({ MAX_DELEGATION_DEPTH: '1' }).maxDelegationDepth, 1);
    assert.equal(loadConfig({ MAX_DELEGATION_DEPTH: '10' }).maxDelegationDepth, 10);
    refused({ MAX_DELEGATION_DEPTH: '0' }, /^MAX_DELEGATION_DEPTH must be between 1 and 10, got 0$/);
    refused({ MAX_DELEGATION_DEPTH: '11' }, /MAX_DELEGATION_DEPTH must be between 1 and 10/);
    refused({ MAX_DELEGATION_DEPTH: 'five' }, /MAX_DELEGATION_DEPTH must be a whole number/);
  });

  it('refuses ACCESS_TOKEN_TTL 3601 with a clear message', () => {
    refused({ ACCESS_TOKEN_TTL: '3601' }, /^ACCESS_TOKEN_TTL must be between 1 and 3600, got 3601$/);
    refused({ ACCESS_TOKEN_TTL: '0' }, /ACCESS_TOKEN_TTL must be between 1 and 3600/);
  });

  it('refuses non-numeric and non-integer numbers', () => {
    for (const bad of ['abc', '300s', '-1', '1.5', '1e3', ' 300', '0x10']) {
      refused({ ACCESS_TOKEN_TTL: bad }, /ACCESS_TOKEN_TTL must be a whole number/);
    }
    refused({ PORT: 'http' }, /PORT must be a whole number, got "http"/);
    refused({ PORT: '65536' }, /PORT must be between 0 and 65535/);
    refused({ REFRESH_TOKEN_TTL: '59' }, /REFRESH_TOKEN_TTL/);
    refused({ JWKS_MAX_AGE: '86401' }, /JWKS_MAX_AGE/);
  });

  it('refuses a DATABASE_URL or REDIS_URL with the wrong scheme', () => {
    refused({ DATABASE_URL: 'mysql://u@db/sigil' }, /DATABASE_URL must use postgres: or postgresql:, got "mysql:"/);
    refused({ DATABASE_URL: 'not a url' }, /DATABASE_URL is not a URL/);
    refused({ REDIS_URL: 'http://cache:6379' }, /REDIS_URL must use redis: or rediss:/);
  });

  it('never prints a store or issuer password in a configuration error', () => {
    const PASSWORD = 'Hunter2-s3cr3t';
    const leaks = (env: Record<string, string>, pattern: RegExp) => {
      refused(env, pattern);
      try {
        loadConfig(env);
      } catch (err) {
        assert.ok(!(err as Error).message.includes(PASSWORD), `the password leaks: ${(err as Error).message}`);
        assert.ok(!(err as Error).message.includes('s3cr3t'), `part of the password leaks: ${(err as Error).message}`);
      }
    };
    // unparsable: a password with an unencoded /, #, ? (the usual reason a URL does not parse)
    for (const pw of [`${PASSWORD}/x`, `${PASSWORD}#x`, `${PASSWORD}?x`, `x/${PASSWORD}`]) {
      leaks({ DATABASE_URL: `postgres://sigil:${pw}@db.internal:5432/sigil` }, /DATABASE_URL is not a URL: "postgres:\/\/\*\*\*@db\.internal:5432\/sigil"/);
      leaks({ REDIS_URL: `redis://:${pw}@cache.internal:6379/0` }, /REDIS_URL is not a URL: "redis:\/\/\*\*\*@cache\.internal:6379\/0"/);
    }
    leaks({ DATABASE_URL: `postgres://db.internal:bad port/sigil?password=${PASSWORD}` }, /DATABASE_URL is not a URL: .*password=\*\*\*/);
    leaks({ DATABASE_URL: `mysql://sigil:${PASSWORD}@db/sigil` }, /DATABASE_URL must use postgres: or postgresql:, got "mysql:"/);
    leaks({ ISSUER: `https://admin:${PASSWORD}@auth.example.com/path` }, /ISSUER must be an origin .*got "https:\/\/\*\*\*@auth\.example\.com\/path"/);
    leaks({ ISSUER: `https://admin:${PASSWORD}@auth example.com` }, /ISSUER is not a URL: "https:\/\/\*\*\*@auth example\.com"/);
  });

  it('DATABASE_DIRECT_URL: a Postgres URL used only with DATABASE_URL; unset means DATABASE_URL', () => {
    const bounced = 'postgres://u@pgbouncer:6432/sigil';
    assert.equal(loadConfig({ DATABASE_URL: bounced }).databaseDirectUrl, undefined);
    assert.equal(loadConfig({ DATABASE_URL: bounced, DATABASE_DIRECT_URL: '' }).databaseDirectUrl, undefined);
    const c = loadConfig({ DATABASE_URL: bounced, DATABASE_DIRECT_URL: 'postgresql://u@db:5432/sigil' });
    assert.equal(c.databaseUrl, bounced);
    assert.equal(c.databaseDirectUrl, 'postgresql://u@db:5432/sigil');
    refused({ DATABASE_URL: bounced, DATABASE_DIRECT_URL: 'mysql://u@db/sigil' }, /DATABASE_DIRECT_URL must use postgres: or postgresql:, got "mysql:"/);
    refused({ DATABASE_URL: bounced, DATABASE_DIRECT_URL: 'db:5432' }, /DATABASE_DIRECT_URL/);
    refused({ DATABASE_DIRECT_URL: 'postgres://u@db:5432/sigil' }, /DATABASE_DIRECT_URL needs DATABASE_URL/);
  });

  it('refuses unknown enumerated values', () => {
    refused({ LOG_LEVEL: 'verbose' }, /LOG_LEVEL must be one of/);
    refused({ SIGNING_ALG: 'HS256' }, /SIGNING_ALG must be one of ES256, EdDSA, PS256, got "HS256"/);
    refused({ DPOP_NONCE: 'yes' }, /DPOP_NONCE must be one of off, required/);
  });

  it('reads the connection, status-stream and metrics bounds, and refuses inconsistent ones', () => {
    const c = loadConfig({
      HTTP_HEADERS_TIMEOUT_MS: '1000', HTTP_REQUEST_TIMEOUT_MS: '2000', HTTP_KEEP_ALIVE_TIMEOUT_MS: '500', HTTP_MAX_CONNECTIONS: '50',
      STATUS_STREAMS_MAX: '40', STATUS_STREAMS_PER_ADDRESS: '2', STATUS_STREAM_LIFETIME: '60',
      METRICS_PORT: '9464', METRICS_HOST: '0.0.0.0', METRICS_TOKEN: 't'.repeat(32), METRICS_CLIENT_IDS: ' a, b ,a,, c ',
    });
    assert.deepEqual(c.http, { headersTimeoutMs: 1000, requestTimeoutMs: 2000, keepAliveTimeoutMs: 500, maxConnections: 50 });
    assert.deepEqual(c.statusStreams, { max: 40, perAddress: 2, lifetimeSeconds: 60 });
    assert.deepEqual(c.metrics, { port: 9464, host: '0.0.0.0', token: 't'.repeat(32), clientIds: ['a', 'b', 'c'] });
    assert.equal(loadConfig({ STATUS_STREAMS_MAX: '10', STATUS_STREAMS_PER_ADDRESS: '50' }).statusStreams.perAddress, 10);

    refused({ HTTP_HEADERS_TIMEOUT_MS: '20000' }, /HTTP_HEADERS_TIMEOUT_MS \(20000\) must not be above HTTP_REQUEST_TIMEOUT_MS \(10000\)/);
    refused({ HTTP_MAX_CONNECTIONS: '100' }, /STATUS_STREAMS_MAX \(5000\) must be below HTTP_MAX_CONNECTIONS \(100\)/);
    refused({ HTTP_REQUEST_TIMEOUT_MS: '0' }, /HTTP_REQUEST_TIMEOUT_MS must be between/);
    refused({ METRICS_TOKEN: 'short' }, /METRICS_TOKEN must be at least 32/);
    refused({ METRICS_TOKEN: `${'t'.repeat(32)} x` }, /METRICS_TOKEN/);
    refused({ METRICS_PORT: '3000' }, /METRICS_PORT must differ from PORT/);
    refused({ METRICS_CLIENT_IDS: Array.from({ length: 101 }, (_, i) => `c${i}`).join(',') }, /METRICS_CLIENT_IDS may name at most 100/);
  });

  it('REDIS_CLUSTER=true reads REDIS_URL as the cluster\'s seed nodes', () => {
    const c = loadConfig({ REDIS_CLUSTER: 'true', REDIS_URL: 'redis://10.0.0.1:7000, redis://10.0.0.2:7001,redis://[::1]' });
    assert.deepEqual(c.redisCluster, {
      nodes: [{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 7001 }, { host: '::1', port: 6379 }],
      username: undefined, password: undefined, tls: false,
    });
    assert.equal(c.redisUrl, 'redis://10.0.0.1:7000, redis://10.0.0.2:7001,redis://[::1]', 'REDIS_URL is still what says Redis is used');
    const tls = loadConfig({ REDIS_CLUSTER: 'true', REDIS_URL: 'rediss://sigil:p%40ss@a:7000,rediss://sigil:p%40ss@b:7000/0' });
    assert.deepEqual(tls.redisCluster, { nodes: [{ host: 'a', port: 7000 }, { host: 'b', port: 7000 }], username: 'sigil', password: 'p@ss', tls: true });
    assert.equal(loadConfig({ REDIS_CLUSTER: 'false', REDIS_URL: 'redis://a:1/2' }).redisCluster, undefined);
  });

  it('refuses a cluster configuration that cannot work, without printing a password', () => {
    refused({ REDIS_CLUSTER: 'true' }, /REDIS_CLUSTER=true needs REDIS_URL/);
    refused({ REDIS_CLUSTER: 'yes', REDIS_URL: 'redis://a:1' }, /REDIS_CLUSTER must be one of true, false/);
    refused({ REDIS_CLUSTER: 'true', REDIS_URL: 'redis://a:1,http://b:2' }, /REDIS_URL must use redis: or rediss:/);
    refused({ REDIS_CLUSTER: 'true', REDIS_URL: 'redis://a:1,rediss://b:2' }, /share one scheme/);
    refused({ REDIS_CLUSTER: 'true', REDIS_URL: 'redis://u:secret1@a:1,redis://u:secret2@b:2' }, /same credentials/);
    refused({ REDIS_URL: 'redis://a:1,redis://b:2' }, /set REDIS_CLUSTER=true/);
    for (const env of [
      { REDIS_CLUSTER: 'true', REDIS_URL: 'redis://u:hunter2@a:1/3' },
      { REDIS_CLUSTER: 'true', REDIS_URL: 'redis://u:hunter2@a:1,redis://u:hunter2@b:99999' },
      { REDIS_URL: 'redis://u:hunter2@a:notaport' },
      { DATABASE_URL: 'postgres://u:hunter2@db:notaport/sigil' },
    ]) {
      assert.throws(() => loadConfig(env), (err: Error) => {
        assert.ok(err instanceof ConfigError, err.message);
        assert.doesNotMatch(err.message, /hunter2/, `the password is not in "${err.message}"`);
        return true;
      });
    }
  });
});
