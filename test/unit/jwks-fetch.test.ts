// The SSRF-safe jwks_uri fetcher: the IP range classifier (v4, v6, v4-mapped, NAT64), the up-front URI
// checks, and the fetcher itself against real local servers: every resolved address checked, the
// connection pinned to the checked address, no redirects, size and time limits, bounded caching.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { JWK } from 'jose';
import { clientAssertion, generateClientKey, keyPairFromPrivateJwk, type SigningKeyPair } from '../../src/client/oauth-client.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { jwksProblems } from '../../src/clients/client-keys.js';
import { ed25519IdentityKey, rsaExponentOneKey } from '../support/forge.js';
import ipaddr from 'ipaddr.js';
import { classifyAddress, ipv6Bytes, KNOWN_RANGE_NAMES, type AddressClass } from '../../src/outbound/address-ranges.js';
import { addressProblem } from '../../src/outbound/destination.js';
import { jwksUriProblem, JwksUriFetcher, type JwksUriPolicy } from '../../src/outbound/jwks-fetch.js';
import type { Resolver } from '../../src/outbound/pinned-resolution.js';
import { testClock } from '../support/clock.js';

const log = createLogger('silent');
const NONE = { allowHttpLoopback: false, allowedHosts: [] as string[] };
const DEV = { allowHttpLoopback: true, allowedHosts: [] as string[] };

function policy(over: Partial<JwksUriPolicy> = {}): JwksUriPolicy {
  return { allowHttpLoopback: true, allowedHosts: [], timeoutMs: 2000, maxBytes: 64 * 1024, minCacheSeconds: 60, maxCacheSeconds: 86400, ...over };
}

describe('classifyAddress: IPv4', () => {
  const cases: Array<[string, AddressClass]> = [
    ['0.0.0.0', 'unspecified'], ['0.1.2.3', 'unspecified'],
    ['10.0.0.0', 'private'], ['10.0.0.1', 'private'], ['10.255.255.255', 'private'], ['9.255.255.255', 'public'], ['11.0.0.0', 'public'],
    ['100.64.0.0', 'cgnat'], ['100.64.0.1', 'cgnat'], ['100.127.255.255', 'cgnat'], ['100.63.255.255', 'public'], ['100.128.0.0', 'public'],
    ['127.0.0.1', 'loopback'], ['127.0.0.0', 'loopback'], ['127.255.255.254', 'loopback'], ['126.255.255.255', 'public'], ['128.0.0.0', 'public'],
    ['169.254.169.254', 'link-local'], ['169.254.0.0', 'link-local'], ['169.253.255.255', 'public'], ['169.255.0.0', 'public'],
    ['172.16.0.1', 'private'], ['172.31.255.255', 'private'], ['172.15.255.255', 'public'], ['172.32.0.0', 'public'],
    ['192.168.0.1', 'private'], ['192.168.255.255', 'private'], ['192.167.255.255', 'public'], ['192.169.0.0', 'public'],
    ['192.0.0.8', 'reserved'], ['192.0.2.1', 'documentation'], ['198.51.100.7', 'documentation'], ['203.0.113.9', 'documentation'],
    ['192.88.99.1', 'reserved'], ['198.18.0.1', 'benchmarking'], ['198.19.255.255', 'benchmarking'], ['198.20.0.0', 'public'], ['198.17.255.255', 'public'],
    ['224.0.0.1', 'multicast'], ['239.255.255.255', 'multicast'], ['223.255.255.255', 'public'],
    ['240.0.0.1', 'reserved'], ['254.1.2.3', 'reserved'], ['255.255.255.255', 'broadcast'],
    ['8.8.8.8', 'public'], ['1.1.1.1', 'public'], ['93.184.216.34', 'public'], ['192.0.3.1', 'public'],
  ];
  for (const [address, expected] of cases) {
    it(`${address} is ${expected}`, () => assert.equal(classifyAddress(address), expected));
  }
});

describe('classifyAddress: IPv6', () => {
  const cases: Array<[string, AddressClass]> = [
    ['::', 'unspecified'], ['0:0:0:0:0:0:0:0', 'unspecified'], ['::1', 'loopback'], ['0:0:0:0:0:0:0:1', 'loopback'], ['[::1]', 'loopback'],
    ['::2', 'reserved'], ['::127.0.0.1', 'reserved'],
    // v4-mapped addresses are judged as the IPv4 address they reach
    ['::ffff:127.0.0.1', 'loopback'], ['::ffff:7f00:1', 'loopback'], ['::FFFF:127.0.0.1', 'loopback'], ['0:0:0:0:0:ffff:7f00:0001', 'loopback'],
    ['::ffff:10.0.0.1', 'private'], ['::ffff:a00:1', 'private'], ['::ffff:169.254.169.254', 'link-local'], ['::ffff:a9fe:a9fe', 'link-local'],
    ['::ffff:100.64.0.1', 'cgnat'], ['::ffff:0.0.0.0', 'unspecified'], ['::ffff:224.0.0.1', 'multicast'], ['::ffff:8.8.8.8', 'public'],
    // NAT64 translates to the embedded IPv4 address
    ['64:ff9b::8.8.8.8', 'public'], ['64:ff9b::10.0.0.1', 'private'], ['64:ff9b::7f00:1', 'loopback'], ['64:ff9b:1::1', 'private'],
    ['100::1', 'reserved'], ['2001:db8::1', 'documentation'], ['2001:db8:ffff::1', 'documentation'], ['2001::1', 'reserved'], ['2001:0:4136:e378::1', 'reserved'],
    ['2001:2::1', 'reserved'], ['2002:7f00:1::1', 'reserved'], ['3fff::1', 'documentation'], ['3fff:fff::1', 'documentation'],
    ['fc00::1', 'private'], ['fd00::1', 'private'], ['fdff:ffff::1', 'private'], ['fe80::1', 'link-local'], ['fe80::1%eth0', 'link-local'], ['febf::1', 'link-local'],
    ['fec0::1', 'private'], ['ff02::1', 'multicast'], ['ff05::2', 'multicast'], ['ff0e::1', 'multicast'],
    ['2001:4860:4860::8888', 'public'], ['2606:4700:4700::1111', 'public'], ['2a00:1450:4001:82b::200e', 'public'], ['3ffe::1', 'public'],
    ['4000::1', 'reserved'], ['1::1', 'reserved'], ['5f00::1', 'reserved'], ['e000::1', 'reserved'],
  ];
  for (const [address, expected] of cases) {
    it(`${address} is ${expected}`, () => assert.equal(classifyAddress(address), expected));
  }

  it('refuses what is not an IP address', () => {
    for (const bad of ['localhost', '1.2.3', '999.1.1.1', '', '::g', '1.2.3.4.5', 'example.com', '01.2.3.4']) {
      assert.throws(() => classifyAddress(bad), TypeError, bad);
    }
  });

  it('ipv6Bytes expands every notation to the same 16 bytes', () => {
    const hex = (a: string) => Buffer.from(ipv6Bytes(a)).toString('hex');
    assert.equal(hex('1:2:3:4:5:6:7:8'), '00010002000300040005000600070008');
    assert.equal(hex('1::'), '00010000000000000000000000000000');
    assert.equal(hex('::1'), '00000000000000000000000000000001');
    assert.equal(hex('1::8'), '00010000000000000000000000000008');
    assert.equal(hex('::ffff:1.2.3.4'), '00000000000000000000ffff01020304');
    assert.equal(hex('::ffff:102:304'), '00000000000000000000ffff01020304');
    assert.equal(hex('::1.2.3.4'), '00000000000000000000000001020304');
    assert.equal(hex('64:ff9b::192.0.2.33'), '0064ff9b0000000000000000c0000221');
    assert.equal(hex('1:2:3:4:5:6:1.2.3.4'), '00010002000300040005000601020304');
    assert.equal(hex('FE80::ABCD%en0'), 'fe80000000000000000000000000abcd');
  });
});

describe('classifyAddress: what it assumes of ipaddr.js', () => {
  // a range name a newer ipaddr.js adds would be classified reserved (refused) until mapped: fail here, by name
  it('every special-purpose range ipaddr.js names is one the classifier maps', () => {
    const names = (cls: unknown) => Object.keys((cls as { prototype: { SpecialRanges: object } }).prototype.SpecialRanges);
    assert.deepEqual(names(ipaddr.IPv4).filter((n) => !KNOWN_RANGE_NAMES.ipv4.includes(n)), []);
    assert.deepEqual(names(ipaddr.IPv6).filter((n) => !KNOWN_RANGE_NAMES.ipv6.includes(n)), []);
  });

  it('the deprecated IPv4-compatible ::a.b.c.d is not read as IPv4-mapped (ipaddr.js alone would)', () => {
    assert.equal(ipaddr.IPv6.parse('::8.8.8.8').range(), 'ipv4Mapped', 'the library quirk the classifier works around');
    assert.equal(classifyAddress('::8.8.8.8'), 'reserved');
    assert.equal(classifyAddress('::ffff:8.8.8.8'), 'public');
  });
});

describe('jwksUriProblem: checks before anything is fetched', () => {
  it('accepts an https URL with a public or unresolved host name', () => {
    for (const ok of ['https://keys.example.com/jwks.json', 'https://keys.example.com:8443/.well-known/jwks?v=2', 'https://8.8.8.8/jwks', 'https://[2606:4700:4700::1111]/jwks', 'https://localhost:9999/jwks']) {
      assert.equal(jwksUriProblem(ok, NONE), undefined, ok);
    }
  });

  it('refuses other schemes, credentials, fragments and non-URLs, saying what to fix', () => {
    assert.match(jwksUriProblem('http://keys.example.com/jwks', NONE)!, /must use https$/);
    assert.match(jwksUriProblem('ftp://keys.example.com/jwks', NONE)!, /must use https, not ftp/);
    assert.match(jwksUriProblem('file:///etc/passwd', NONE)!, /must use https, not file/);
    assert.match(jwksUriProblem('https://keys.example.com/jwks#k1', NONE)!, /fragment/);
    assert.match(jwksUriProblem('https://user:pw@keys.example.com/jwks', NONE)!, /credentials/);
    assert.match(jwksUriProblem('https://user@keys.example.com/jwks', NONE)!, /credentials/);
    assert.match(jwksUriProblem('not a url', NONE)!, /not an absolute URL/);
    assert.match(jwksUriProblem('/relative/jwks', NONE)!, /not an absolute URL/);
    assert.match(jwksUriProblem(42, NONE)!, /absolute https URL/);
    assert.match(jwksUriProblem(`https://k.example.com/${'a'.repeat(2000)}`, NONE)!, /at most 2000/);
  });

  it('refuses literal addresses in internal ranges, naming the range', () => {
    const cases: Array<[string, RegExp]> = [
      ['https://127.0.0.1/jwks', /host 127\.0\.0\.1 is a loopback address/],
      ['https://10.0.0.1/jwks', /host 10\.0\.0\.1 is a private address/],
      ['https://192.168.1.20/jwks', /private address/],
      ['https://172.20.0.5/jwks', /private address/],
      ['https://169.254.169.254/latest/meta-data/', /link-local address/],
      ['https://100.100.100.200/jwks', /carrier-grade NAT/],
      ['https://0.0.0.0/jwks', /unspecified address/],
      ['https://224.0.0.251/jwks', /multicast address/],
      ['https://[::1]/jwks', /host ::1 is a loopback address/],
      ['https://[fd00::1]/jwks', /private address/],
      ['https://[fe80::1]/jwks', /link-local address/],
      ['https://[::]/jwks', /unspecified address/],
      ['https://[::ffff:127.0.0.1]/jwks', /loopback address/],
      ['https://[::ffff:169.254.169.254]/jwks', /link-local address/],
      // WHATWG URL parsing turns these spellings into 127.0.0.1 before the check
      ['https://0x7f.1/jwks', /127\.0\.0\.1 is a loopback address/],
      ['https://2130706433/jwks', /127\.0\.0\.1 is a loopback address/],
      ['https://017700000001/jwks', /127\.0\.0\.1 is a loopback address/],
    ];
    for (const [uri, expected] of cases) assert.match(jwksUriProblem(uri, NONE) ?? 'accepted', expected, uri);
  });

  it('the development switch allows http and loopback only for loopback hosts', () => {
    assert.equal(jwksUriProblem('http://127.0.0.1:8080/jwks', DEV), undefined);
    assert.equal(jwksUriProblem('http://localhost:8080/jwks', DEV), undefined);
    assert.equal(jwksUriProblem('http://[::1]:8080/jwks', DEV), undefined);
    assert.equal(jwksUriProblem('https://127.0.0.1/jwks', DEV), undefined);
    assert.match(jwksUriProblem('http://keys.example.com/jwks', DEV)!, /plain http is allowed only for loopback hosts/);
    assert.match(jwksUriProblem('http://10.0.0.1/jwks', DEV)!, /must use https/);
    assert.match(jwksUriProblem('https://10.0.0.1/jwks', DEV)!, /private address/);
  });

  it('allowed hosts may be internal but never unspecified, multicast or reserved, and still need https', () => {
    const allow = { allowHttpLoopback: false, allowedHosts: ['10.1.2.3', '224.0.0.1', '0.0.0.0', 'jwks.internal'] };
    assert.equal(jwksUriProblem('https://10.1.2.3/jwks', allow), undefined);
    assert.match(jwksUriProblem('http://10.1.2.3/jwks', allow)!, /must use https/);
    assert.match(jwksUriProblem('https://224.0.0.1/jwks', allow)!, /multicast/);
    assert.match(jwksUriProblem('https://0.0.0.0/jwks', allow)!, /unspecified/);
    assert.match(jwksUriProblem('https://10.1.2.4/jwks', allow)!, /private/);
    assert.equal(addressProblem('jwks.internal', '10.9.9.9', allow), undefined);
    assert.equal(jwksUriProblem('https://[fd00::1]/jwks', { allowHttpLoopback: false, allowedHosts: ['[FD00::1]'] }), undefined);
    assert.equal(addressProblem('jwks.internal', '10.0.0.1', { allowHttpLoopback: false, allowedHosts: ['JWKS.Internal.'] }), undefined);
    assert.match(addressProblem('jwks.other', '10.9.9.9', allow)!, /host jwks\.other resolves to 10\.9\.9\.9, a private address/);
  });
});

// ---------------------------------------------------------------------------------------------
// The fetcher against real servers

interface Partner {
  url: string;
  port: number;
  hits: Map<string, number>;
  /** what /jwks serves now */
  state: { jwks: unknown; cacheControl?: string; expires?: string };
  close(): Promise<void>;
}

async function startPartner(): Promise<Partner> {
  const hits = new Map<string, number>();
  const state: Partner['state'] = { jwks: { keys: [] } };
  const server = http.createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    hits.set(p, (hits.get(p) ?? 0) + 1);
    const json = (doc: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(doc));
    };
    switch (p) {
      case '/jwks':
        return json(state.jwks, {
          ...(state.cacheControl ? { 'cache-control': state.cacheControl } : {}),
          ...(state.expires ? { expires: state.expires } : {}),
        });
      case '/redirect':
        res.writeHead(302, { location: '/jwks' });
        return res.end();
      case '/moved':
        res.writeHead(301, { location: 'http://169.254.169.254/latest/meta-data/' });
        return res.end();
      case '/big':
        return json({ keys: [], pad: 'x'.repeat(100 * 1024) });
      case '/big-chunked': {
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = 'x'.repeat(16 * 1024);
        res.write('{"keys":[],"pad":"');
        for (let i = 0; i < 8; i++) res.write(chunk);
        return res.end('"}');
      }
      case '/slow':
        return; // never answers
      case '/trickle': {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"keys":[');
        return; // headers sent, body never finishes
      }
      case '/error':
        res.writeHead(500);
        return res.end('oops');
      case '/not-json':
        res.writeHead(200, { 'content-type': 'text/html' });
        return res.end('<html>hello</html>');
      case '/no-keys':
        return json({ hello: 'world' });
      default:
        res.writeHead(404);
        return res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    hits,
    state,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

async function key(): Promise<{ pair: SigningKeyPair; jwk: JWK }> {
  const { privateJwk, publicJwks } = await generateClientKey('ES256');
  return { pair: await keyPairFromPrivateJwk(privateJwk), jwk: publicJwks.keys[0]! };
}

describe('JwksUriFetcher', () => {
  let partner: Partner;
  let a: { pair: SigningKeyPair; jwk: JWK };
  let b: { pair: SigningKeyPair; jwk: JWK };

  before(async () => {
    partner = await startPartner();
    a = await key();
    b = await key();
    partner.state.jwks = { keys: [a.jwk] };
  });
  after(async () => {
    await partner?.close();
  });

  const hits = (p: string) => partner.hits.get(p) ?? 0;

  it('fetches a JWKS over allowed loopback http and hands oidc-provider a Response', async () => {
    const f = new JwksUriFetcher(policy(), log, { validate: jwksProblems });
    const res = await f.fetch(`${partner.url}/jwks`, { method: 'GET' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'max-age=60', 'stale again after the refetch interval');
    assert.equal(res.headers.get('expires'), null);
    assert.deepEqual(await res.json(), { keys: [a.jwk] });
    const loaded = await f.load(`${partner.url}/jwks`);
    assert.ok(loaded.ok);
  });

  it('refuses plain http and loopback when the development switch is off, before connecting', async () => {
    const before = hits('/jwks');
    const f = new JwksUriFetcher(policy({ allowHttpLoopback: false }), log);
    const r = await f.load(`${partner.url}/jwks`);
    assert.deepEqual(r, { ok: false, problem: 'jwks_uri must use https' });
    await assert.rejects(f.fetch(`${partner.url}/jwks`), /must use https/);
    const viaName = await f.load(`https://localhost:${partner.port}/jwks`);
    assert.ok(!viaName.ok);
    assert.match(viaName.problem, /host localhost resolves to (127\.0\.0\.1|::1), a loopback address; Sigil fetches keys only from public addresses/);
    assert.equal(hits('/jwks'), before, 'nothing reached the server');
  });

  it('checks every resolved address: one internal address among public ones refuses the host', async () => {
    const calls: string[] = [];
    const resolve: Resolver = async (h) => {
      calls.push(h);
      return [{ address: '93.184.216.34', family: 4 }, { address: '10.0.0.7', family: 4 }];
    };
    const f = new JwksUriFetcher(policy({ allowHttpLoopback: false }), log, { resolve });
    const r = await f.load('https://keys.partner.test/jwks');
    assert.ok(!r.ok);
    assert.match(r.problem, /host keys\.partner\.test resolves to 10\.0\.0\.7, a private address/);
    assert.deepEqual(calls, ['keys.partner.test']);
    for (const address of ['169.254.169.254', '::1', 'fd00::1', '::ffff:127.0.0.1', '100.64.1.1', '0.0.0.0']) {
      const g = new JwksUriFetcher(policy({ allowHttpLoopback: false }), log, { resolve: async () => [{ address, family: address.includes(':') ? 6 : 4 }] });
      const out = await g.load('https://keys.partner.test/jwks');
      assert.ok(!out.ok && out.problem.includes(`resolves to ${address}`), `${address}: ${JSON.stringify(out)}`);
    }
  });

  it('a name the development switch does not cover may not resolve to loopback', async () => {
    const f = new JwksUriFetcher(policy(), log, { resolve: async () => [{ address: '127.0.0.1', family: 4 }] });
    const r = await f.load(`https://rebind.partner.test:${partner.port}/jwks`);
    assert.ok(!r.ok);
    assert.match(r.problem, /rebind\.partner\.test resolves to 127\.0\.0\.1, a loopback address/);
  });

  it('refuses redirects without following them', async () => {
    const f = new JwksUriFetcher(policy(), log);
    const before = hits('/jwks');
    const r = await f.load(`${partner.url}/redirect`);
    assert.deepEqual(r, { ok: false, problem: 'jwks_uri answered with a redirect (302); redirects are not followed, register the final URL' });
    const moved = await f.load(`${partner.url}/moved`);
    assert.ok(!moved.ok && /redirect \(301\)/.test(moved.problem));
    assert.equal(hits('/jwks'), before, 'the Location was not fetched');
  });

  it('refuses documents over the size limit, announced or not', async () => {
    const f = new JwksUriFetcher(policy(), log);
    assert.deepEqual(await f.load(`${partner.url}/big`), { ok: false, problem: 'jwks_uri document is larger than 65536 bytes' });
    assert.deepEqual(await f.load(`${partner.url}/big-chunked`), { ok: false, problem: 'jwks_uri document is larger than 65536 bytes' });
  });

  it('gives up on a server that never answers, or never finishes, within the deadline', async () => {
    const f = new JwksUriFetcher(policy({ timeoutMs: 300 }), log);
    for (const p of ['/slow', '/trickle']) {
      const t0 = Date.now();
      const r = await f.load(`${partner.url}${p}`);
      const elapsed = Date.now() - t0;
      assert.deepEqual(r, { ok: false, problem: 'jwks_uri did not answer within 300 ms' }, p);
      assert.ok(elapsed < 5000, `${p}: gave up after ${elapsed} ms`);
    }
  });

  it('gives up on a DNS answer that never comes', async () => {
    const f = new JwksUriFetcher(policy({ timeoutMs: 300 }), log, { resolve: () => new Promise(() => {}) });
    const t0 = Date.now();
    const r = await f.load('https://keys.partner.test/jwks');
    assert.deepEqual(r, { ok: false, problem: 'jwks_uri did not answer within 300 ms' });
    assert.ok(Date.now() - t0 < 5000);
  });

  it('refuses error statuses, non-JSON, non-JWKS and JWKS with private members', async () => {
    const f = new JwksUriFetcher(policy(), log, { validate: jwksProblems });
    assert.deepEqual(await f.load(`${partner.url}/error`), { ok: false, problem: 'jwks_uri answered 500, expected 200' });
    assert.deepEqual(await f.load(`${partner.url}/not-json`), { ok: false, problem: 'jwks_uri document is not JSON' });
    assert.deepEqual(await f.load(`${partner.url}/no-keys`), { ok: false, problem: 'jwks_uri document is not a JWKS (no "keys" array)' });
    const g = new JwksUriFetcher(policy(), log, { validate: () => ['key 0 contains private or secret members (d)'] });
    assert.deepEqual(await g.load(`${partner.url}/jwks`), { ok: false, problem: 'jwks_uri document: key 0 contains private or secret members (d)' });
    await assert.rejects(f.fetch(`${partner.url}/jwks`, { method: 'POST' }), /only GET/);
  });

  it('refuses a document holding a key anyone can sign with, or a kid with an escape sequence (the key rules of client-keys.ts)', async () => {
    const f = new JwksUriFetcher(policy(), log, { validate: jwksProblems });
    const good = partner.state.jwks;
    try {
      const cases: Array<[string, JWK, RegExp]> = [
        ['e1', rsaExponentOneKey().jwk, /^jwks_uri document: key 0 has the RSA exponent e = "AQ"; only 65537/],
        ['ed0', ed25519IdentityKey().jwk, /^jwks_uri document: key 0 is an Ed25519 point of small order/],
        ['osc', { ...a.jwk, kid: '\x1b]0;owned\x07' }, /^jwks_uri document: key 0 has a kid that is not 1 to 128 printable ASCII/],
      ];
      for (const [name, jwk, expected] of cases) {
        partner.state.jwks = { keys: [a.jwk, jwk].map((k, i) => ({ ...k, kid: k.kid ?? `k${i}` })).reverse() };
        const r = await f.load(`${partner.url}/jwks?weak=${name}`);
        assert.ok(!r.ok, name);
        assert.match(r.problem, expected);
        await assert.rejects(f.fetch(`${partner.url}/jwks?weak=${name}`), (err: Error) => expected.test(err.message));
      }
    } finally {
      partner.state.jwks = good;
    }
  });

  it('reaches the network at most once per interval per URL: concurrent and repeated calls share one fetch', async () => {
    const f = new JwksUriFetcher(policy(), log);
    const url = `${partner.url}/jwks?throttle=1`;
    const before = hits('/jwks');
    const all = await Promise.all(Array.from({ length: 10 }, () => f.fetch(url)));
    assert.ok(all.every((r) => r.status === 200));
    for (let i = 0; i < 10; i++) await f.fetch(url);
    assert.equal(hits('/jwks') - before, 1);
    // a failure is remembered for the interval too: an attacker cannot make Sigil retry a broken URL
    const err = hits('/error');
    for (let i = 0; i < 5; i++) await assert.rejects(f.fetch(`${partner.url}/error`));
    assert.equal(hits('/error') - err, 1);
  });

  it('trusts fetched keys for their cache lifetime within bounds, then requires a key still published', async () => {
    partner.state.jwks = { keys: [a.jwk] };
    partner.state.cacheControl = 'public, max-age=100000';
    try {
      const clock = testClock();
      const f = new JwksUriFetcher(policy({ minCacheSeconds: 1, maxCacheSeconds: 1 }), log, { now: clock.now });
      const url = `${partner.url}/jwks?lifetime=1`;
      const signedByA = await clientAssertion(a.pair, 'c1', 'https://issuer.example');
      const signedByB = await clientAssertion(b.pair, 'c1', 'https://issuer.example');
      assert.equal(await f.currentKeyProblem(url, signedByA), undefined);
      assert.match((await f.currentKeyProblem(url, signedByB))!, /not signed by a key the client's jwks_uri publishes now/);
      // the partner drops key A; until the (bounded) lifetime passes, A is still trusted, without a refetch
      partner.state.jwks = { keys: [b.jwk] };
      const before = hits('/jwks');
      assert.equal(await f.currentKeyProblem(url, signedByA), undefined);
      assert.equal(hits('/jwks'), before);
      clock.advance(1100);
      assert.match((await f.currentKeyProblem(url, signedByA))!, /not signed by a key/);
      assert.equal(await f.currentKeyProblem(url, signedByB), undefined);
      assert.equal(hits('/jwks') - before, 1, 'max-age=100000 was capped at JWKS_URI_CACHE_MAX (1 s)');
    } finally {
      partner.state.cacheControl = undefined;
    }
  });

  it('no-store and past Expires count as the shortest lifetime; a longer max-age is honoured', async () => {
    partner.state.jwks = { keys: [a.jwk] };
    const signedByA = await clientAssertion(a.pair, 'c1', 'https://issuer.example');
    for (const [headers, refetched] of [
      [{ cacheControl: 'no-store' }, true],
      [{ expires: new Date(Date.now() - 60_000).toUTCString() }, true],
      [{ cacheControl: 'max-age=30' }, false],
      [{ expires: new Date(Date.now() + 60_000).toUTCString() }, false],
    ] as const) {
      Object.assign(partner.state, { cacheControl: undefined, expires: undefined }, headers);
      const clock = testClock();
      const f = new JwksUriFetcher(policy({ minCacheSeconds: 1, maxCacheSeconds: 3600 }), log, { now: clock.now });
      const url = `${partner.url}/jwks?h=${encodeURIComponent(JSON.stringify(headers))}`;
      assert.equal(await f.currentKeyProblem(url, signedByA), undefined);
      const before = hits('/jwks');
      clock.advance(1100);
      assert.equal(await f.currentKeyProblem(url, signedByA), undefined);
      assert.equal(hits('/jwks') - before, refetched ? 1 : 0, JSON.stringify(headers));
    }
    Object.assign(partner.state, { cacheControl: undefined, expires: undefined });
  });

  it('keys past their lifetime whose refresh fails are no longer trusted (fail closed)', async () => {
    partner.state.jwks = { keys: [a.jwk] };
    const clock = testClock();
    const f = new JwksUriFetcher(policy({ minCacheSeconds: 1, maxCacheSeconds: 1 }), log, { now: clock.now });
    const url = `${partner.url}/jwks?failclosed=1`;
    const signedByA = await clientAssertion(a.pair, 'c1', 'https://issuer.example');
    assert.equal(await f.currentKeyProblem(url, signedByA), undefined);
    partner.state.jwks = 'not a jwks';
    clock.advance(1100);
    assert.match((await f.currentKeyProblem(url, signedByA))!, /could not be refreshed: jwks_uri document is not a JWKS/);
    partner.state.jwks = { keys: [a.jwk] };
  });
});

describe('JwksUriFetcher over https: the connection goes to the checked address', () => {
  let dir: string | undefined;
  let cert: string;
  let server: https.Server | undefined;
  let port: number;
  let jwk: JWK;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'sigil-jwks-tls-'));
    // openssl makes the test certificate; without it these tests fail (never skip): .ci/run installs it
    try {
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
        '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
        '-subj', '/CN=jwks.partner.test', '-addext', 'subjectAltName=DNS:jwks.partner.test',
      ], { stdio: 'ignore' });
    } catch (err) {
      throw new Error(`openssl could not make the test certificate (install openssl; .ci/run does): ${(err as Error).message}`);
    }
    cert = readFileSync(path.join(dir, 'cert.pem'), 'utf8');
    jwk = (await key()).jwk;
    server = https.createServer({ key: readFileSync(path.join(dir, 'key.pem')), cert }, (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk], host: req.headers.host }));
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('resolves once, checks, and connects to that address (the name resolves nowhere else)', async () => {
    let lookups = 0;
    // an allowed internal host; the system resolver does not know this name, so only a pinned
    // connection can reach the server
    const resolve: Resolver = async () => {
      lookups++;
      return [{ address: '127.0.0.1', family: 4 }];
    };
    const f = new JwksUriFetcher(policy({ allowHttpLoopback: false, allowedHosts: ['jwks.partner.test'] }), log, { resolve, ca: cert });
    const r = await f.load(`https://jwks.partner.test:${port}/jwks`);
    assert.deepEqual(r, { ok: true, keys: [jwk] });
    assert.equal(lookups, 1, 'one resolution, used for both the check and the connection');
  });

  it('a DNS answer that changes between calls cannot move a checked connection (rebinding)', async () => {
    const answers = [[{ address: '93.184.216.34', family: 4 }], [{ address: '127.0.0.1', family: 4 }]];
    let lookups = 0;
    const resolve: Resolver = async () => answers[Math.min(lookups++, 1)]!;
    // not an allowed host: the public first answer passes the check; a connection that re-resolved
    // would reach the loopback server and succeed. Pinned, it goes to 93.184.216.34 and fails.
    const f = new JwksUriFetcher(policy({ allowHttpLoopback: false, timeoutMs: 1500 }), log, { resolve, ca: cert });
    const r = await f.load(`https://jwks.partner.test:${port}/jwks`);
    assert.ok(!r.ok, 'did not reach the loopback server');
    assert.match(r.problem, /could not be reached|did not answer/);
    assert.equal(lookups, 1);
  });

  it('verifies the certificate against the host name, not the address', async () => {
    const f = new JwksUriFetcher(policy({ allowHttpLoopback: false, allowedHosts: ['other.partner.test'] }), log, {
      resolve: async () => [{ address: '127.0.0.1', family: 4 }], ca: cert,
    });
    const r = await f.load(`https://other.partner.test:${port}/jwks`);
    assert.ok(!r.ok);
    assert.match(r.problem, /TLS certificate is not valid for other\.partner\.test/);
    const untrusted = new JwksUriFetcher(policy({ allowHttpLoopback: false, allowedHosts: ['jwks.partner.test'] }), log, {
      resolve: async () => [{ address: '127.0.0.1', family: 4 }],
    });
    const r2 = await untrusted.load(`https://jwks.partner.test:${port}/jwks`);
    assert.ok(!r2.ok);
    assert.match(r2.problem, /TLS certificate/);
  });
});

describe('JWKS_URI_* settings (src/config.ts)', () => {
  it('defaults: https and public addresses only, 3 s, 64 KiB, cached 60 s to 1 day', () => {
    assert.deepEqual(loadConfig({}).jwksUri, {
      allowHttpLoopback: false, allowedHosts: [], timeoutMs: 3000, maxBytes: 65536, minCacheSeconds: 60, maxCacheSeconds: 86400,
    });
  });

  it('reads every variable', () => {
    assert.deepEqual(loadConfig({
      JWKS_URI_ALLOW_HTTP_LOOPBACK: 'true', JWKS_URI_ALLOWED_HOSTS: ' Keys.Internal , 10.1.2.3,[fd00::1]', JWKS_URI_TIMEOUT_MS: '1500',
      JWKS_URI_MAX_BYTES: '2048', JWKS_URI_CACHE_MIN: '30', JWKS_URI_CACHE_MAX: '600',
    }).jwksUri, {
      allowHttpLoopback: true, allowedHosts: ['keys.internal', '10.1.2.3', '[fd00::1]'], timeoutMs: 1500, maxBytes: 2048, minCacheSeconds: 30, maxCacheSeconds: 600,
    });
  });

  it('refuses nonsense with a clear error', () => {
    assert.throws(() => loadConfig({ JWKS_URI_ALLOW_HTTP_LOOPBACK: 'yes' }), /JWKS_URI_ALLOW_HTTP_LOOPBACK must be one of true, false/);
    assert.throws(() => loadConfig({ JWKS_URI_ALLOWED_HOSTS: 'https://keys.internal/' }), /JWKS_URI_ALLOWED_HOSTS must be a comma-separated list of host names/);
    assert.throws(() => loadConfig({ JWKS_URI_ALLOWED_HOSTS: '*.internal' }), /JWKS_URI_ALLOWED_HOSTS/);
    assert.throws(() => loadConfig({ JWKS_URI_TIMEOUT_MS: '0' }), /JWKS_URI_TIMEOUT_MS must be between 100 and 30000/);
    assert.throws(() => loadConfig({ JWKS_URI_MAX_BYTES: '10' }), /JWKS_URI_MAX_BYTES must be between 1024/);
    assert.throws(() => loadConfig({ JWKS_URI_CACHE_MIN: '120', JWKS_URI_CACHE_MAX: '60' }), /JWKS_URI_CACHE_MAX \(60\) must not be below JWKS_URI_CACHE_MIN \(120\)/);
  });
});
