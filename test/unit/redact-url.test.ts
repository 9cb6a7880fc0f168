// redactUrl: what may be printed of a URL that can carry a password (store URLs, SIGIL_URL, ISSUER).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { redactUrl, redactUrlList } from '../../src/redact-url.js';

describe('redactUrl', () => {
  it('replaces the userinfo of a URL, keeps the rest', () => {
    assert.equal(redactUrl('postgres://sigil:pw@db:5432/sigil?sslmode=require'), 'postgres://***@db:5432/sigil?sslmode=require');
    assert.equal(redactUrl('redis://:pw@cache:6379/0'), 'redis://***@cache:6379/0');
    assert.equal(redactUrl('rediss://default:pw@cache:6380'), 'rediss://***@cache:6380');
    assert.equal(redactUrl('https://auth.example.com'), 'https://auth.example.com/');
    assert.equal(redactUrl('postgres://db/sigil'), 'postgres://db/sigil', 'nothing to hide');
  });

  it('replaces password-like query parameters', () => {
    assert.equal(redactUrl('postgres://db/sigil?user=a&password=pw&sslmode=require'), 'postgres://db/sigil?user=a&password=***&sslmode=require');
    assert.equal(redactUrl('postgres://db/sigil?sslpassword=pw'), 'postgres://db/sigil?sslpassword=***');
  });

  it('hides everything up to the last @ of what does not parse as a URL, or parses with an @ past its host', () => {
    assert.equal(redactUrl('postgres://sigil:p/w@db/sigil'), 'postgres://***@db/sigil');
    assert.equal(redactUrl('postgres://sigil:p#w@db/sigil'), 'postgres://***@db/sigil');
    assert.equal(redactUrl('postgres://sigil:123/pw@db'), 'postgres://***@db', 'the URL parser takes 123 for a port and /pw@db for a path');
    assert.equal(redactUrl('postgres://sigil:p w@db/x'), 'postgres://***@db/x');
    assert.equal(redactUrl('sigil:pw@db:3000'), '***@db:3000');
    assert.equal(redactUrl('not a url'), 'not a url');
  });

  it('lists: each part redacted; a list that does not split into URLs is redacted whole', () => {
    assert.equal(redactUrlList('redis://:pw@h1:7000, redis://:pw@h2:7000'), 'redis://***@h1:7000,redis://***@h2:7000');
    assert.equal(redactUrlList('redis://:p,w@h1:7000,redis://h2:7000'), 'redis://***@h1:7000,redis://h2:7000');
  });

  it('never contains the password, whatever characters it has (fast-check, seeded)', () => {
    // 8+ characters so that the password is not a substring of the rest by chance
    const password = fc.string({ unit: 'binary-ascii', minLength: 8, maxLength: 24 }).filter((p) => /[A-Za-z0-9]{8}/.test(p));
    fc.assert(fc.property(password, fc.constantFrom('postgres', 'redis', 'rediss', 'https'), (pw, scheme) => {
      const raw = `${scheme}://user:${pw}@host.internal:1234/db`;
      const secret = /[A-Za-z0-9]{8}/.exec(pw)![0];
      assert.ok(!redactUrl(raw).includes(secret), `${JSON.stringify(raw)} -> ${redactUrl(raw)}`);
      assert.ok(!redactUrlList(raw).includes(secret), `${JSON.stringify(raw)} -> ${redactUrlList(raw)}`);
    }), { seed: 20_260_410, numRuns: 2000 });
  });
});
