// What a client assertion must be beyond oidc-provider's checks (draft-ietf-oauth-rfc7523bis): the
// issuer identifier as the sole aud value, no explicitly typed JWT of another kind, sane registered keys.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { generateClientKey } from '../../src/client/oauth-client.js';
import {
  acceptedAssertionAudiences, assertionAudienceProblem, assertionTypeProblem, CLIENT_AUTHENTICATION_TYP, registeredKeysProblem,
} from '../../src/clients/client-assertion.js';
import { rsaExponentOneKey } from '../support/forge.js';

const ISSUER = 'https://sigil.example';

describe('assertionAudienceProblem', () => {
  const strict = acceptedAssertionAudiences(ISSUER, false);
  const legacy = acceptedAssertionAudiences(ISSUER, true);

  it('accepts the issuer, as a string or as the one member of an array', () => {
    assert.equal(assertionAudienceProblem(ISSUER, strict), undefined);
    assert.equal(assertionAudienceProblem([ISSUER], strict), undefined);
  });
  it('refuses the token endpoint URL unless switched on; then it is a sole value too', () => {
    assert.match(assertionAudienceProblem(`${ISSUER}/token`, strict)!, /^client assertion aud must be the issuer identifier$/);
    assert.equal(assertionAudienceProblem(`${ISSUER}/token`, legacy), undefined);
    assert.equal(assertionAudienceProblem([`${ISSUER}/token`], legacy), undefined);
    assert.equal(assertionAudienceProblem(ISSUER, legacy), undefined);
    assert.match(assertionAudienceProblem([ISSUER, `${ISSUER}/token`], legacy)!, /single value: the issuer identifier \(or the token endpoint URL\)/);
  });
  it('refuses several values, whatever they are (audience injection)', () => {
    for (const aud of [[ISSUER, 'https://other.example'], ['https://other.example', ISSUER], [ISSUER, ISSUER], [], [ISSUER, `${ISSUER}/token`]]) {
      assert.match(assertionAudienceProblem(aud, strict)!, /must be a single value/, JSON.stringify(aud));
    }
  });
  it('refuses other servers, other endpoints, near misses and non-strings', () => {
    for (const aud of [undefined, null, 42, { aud: ISSUER }, [[ISSUER]], `${ISSUER}/`, `${ISSUER}/introspect`, ISSUER.toUpperCase(), 'http://sigil.example', ` ${ISSUER}`]) {
      assert.ok(assertionAudienceProblem(aud, strict), JSON.stringify(aud));
    }
  });
  it('property: anything but the issuer (or [issuer]) is refused', () => {
    fc.assert(fc.property(fc.oneof(fc.string(), fc.array(fc.string()), fc.anything()), (aud) => {
      const sole = aud === ISSUER || (Array.isArray(aud) && aud.length === 1 && aud[0] === ISSUER);
      return (assertionAudienceProblem(aud, strict) === undefined) === sole;
    }));
  });
});

describe('assertionTypeProblem', () => {
  it('accepts no typ, JWT and client-authentication+jwt, in any case, with or without application/', () => {
    for (const typ of [undefined, 'JWT', 'jwt', 'application/jwt', CLIENT_AUTHENTICATION_TYP, `application/${CLIENT_AUTHENTICATION_TYP}`, 'CLIENT-AUTHENTICATION+JWT']) {
      assert.equal(assertionTypeProblem(typ), undefined, String(typ));
    }
  });
  it('refuses every other explicit type, and a typ that is not a string', () => {
    for (const typ of ['dpop+jwt', 'at+jwt', 'application/at+jwt', 'statuslist+jwt', 'secevent+jwt', 'logout+jwt', 'sigil-bootstrap+jwt', 'JOSE', 'JOSE+JSON', '', ' JWT', 'text/jwt', null, 1, ['JWT']]) {
      assert.match(assertionTypeProblem(typ)!, /is not a client assertion \(typ must be absent, "JWT" or "client-authentication\+jwt"\)/, String(typ));
    }
    assert.ok(assertionTypeProblem('x'.repeat(5000))!.length < 200, 'a partner\'s long typ is shortened');
  });
});

describe('registeredKeysProblem', () => {
  it('accepts sane keys and a client without jwks (jwks_uri: checked when fetched)', async () => {
    assert.equal(registeredKeysProblem((await generateClientKey('PS256')).publicJwks), undefined);
    assert.equal(registeredKeysProblem(undefined), undefined);
  });
  it('refuses a key set holding one key anyone can sign with, and remembers the answer per key set', async () => {
    const jwks = { keys: [(await generateClientKey('ES256')).publicJwks.keys[0]!, { ...rsaExponentOneKey().jwk, kid: 'weak' }] };
    const problem = registeredKeysProblem(jwks);
    assert.match(problem!, /^the client's registered keys are not acceptable \(key 1 has the RSA exponent e = "AQ"; only 65537 \("AQAB"\) is accepted\); they must be replaced$/);
    assert.equal(registeredKeysProblem(jwks), problem);
  });
});
