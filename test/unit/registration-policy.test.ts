// Dynamic registration policy (registration/registration.ts): what RFC 7591 metadata a registrant may
// send, what the registered client becomes, and what an RFC 7592 update may change. Each rule is a
// table of inputs with the decision expected, with the accepted side next to the refused one.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { ClientRecord } from '../../src/clients/client-store.js';
import {
  DEFAULT_CLIENT_NAME, newRegisteredClient, parseGrant, parseKeyUpdate, parseRegistration, RegistrationError, registrationClientUri, registrationView,
  type RegisteredMetadata, type RegistrationGrant, type UriPolicy,
} from '../../src/registration/registration.js';

const ISSUER = 'https://sigil.example.com';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const POLICY: UriPolicy = { allowHttpLoopback: false, allowedHosts: [] };
const GRANT: RegistrationGrant = { scope: ['orders:read', 'orders:write'], audiences: ['https://api.example.com/orders', 'https://api.example.com/billing'] };

let ecKey: JWK;
let edKey: JWK;
let rsaKey: JWK;
before(async () => {
  const pub = async (alg: string, opts = {}) => exportJWK((await generateKeyPair(alg, { extractable: true, ...opts })).publicKey);
  ecKey = { ...(await pub('ES256')), kid: 'ec' };
  edKey = { ...(await pub('EdDSA', { crv: 'Ed25519' })), kid: 'ed' };
  rsaKey = { ...(await pub('RS256', { modulusLength: 2048 })), kid: 'rsa' };
});

/** the smallest acceptable registration, with `over` merged in (a value of undefined removes the field) */
function body(over: Record<string, unknown> = {}): Record<string, unknown> {
  const b: Record<string, unknown> = { jwks: { keys: [ecKey] }, ...over };
  for (const [k, v] of Object.entries(b)) if (v === undefined) delete b[k];
  return b;
}

const register = (b: unknown, grant = GRANT, policy = POLICY) => parseRegistration(b, grant, policy);

/** refused with a RegistrationError whose message matches */
function refused(fn: () => unknown, message: RegExp, label: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof RegistrationError, `${label}: a RegistrationError (400 invalid_client_metadata), got ${String(err)}`);
    assert.match(err.message, message, label);
    return true;
  });
}

interface Case {
  label: string;
  over: Record<string, unknown>;
  /** the refusal expected, or undefined when the registration is accepted */
  refusal?: RegExp;
  check?: (m: RegisteredMetadata) => void;
}

function table(cases: Case[], make: (c: Case) => unknown = (c) => body(c.over)): void {
  for (const c of cases) {
    it(`${c.refusal ? 'refuses' : 'accepts'} ${c.label}`, () => {
      if (c.refusal) refused(() => register(make(c)), c.refusal, c.label);
      else c.check?.(register(make(c)));
    });
  }
}

describe('registration: the body', () => {
  for (const [label, b] of [['null', null], ['an array', [body()]], ['a string', 'jwks'], ['a number', 1], ['absent', undefined]] as const) {
    it(`refuses a body that is ${label}`, () => refused(() => register(b), /must be a JSON object of client metadata/, label));
  }
  it('accepts the smallest registration and fills in the defaults', () => {
    const m = register(body());
    assert.deepEqual(m, { name: DEFAULT_CLIENT_NAME, grantTypes: ['client_credentials'], scope: GRANT.scope, audiences: GRANT.audiences, jwks: { keys: [ecKey] } });
  });
});

describe('registration: client authentication is private_key_jwt only', () => {
  table([
    { label: 'no token_endpoint_auth_method (private_key_jwt is the default)', over: {}, check: (m) => assert.ok(m.jwks) },
    { label: 'token_endpoint_auth_method private_key_jwt', over: { token_endpoint_auth_method: 'private_key_jwt' } },
    { label: 'token_endpoint_auth_method none (a public client)', over: { token_endpoint_auth_method: 'none' }, refusal: /"none" \(a public client\) is not supported/ },
    { label: 'client_secret_basic', over: { token_endpoint_auth_method: 'client_secret_basic' }, refusal: /"client_secret_basic" relies on a shared client secret/ },
    { label: 'client_secret_post', over: { token_endpoint_auth_method: 'client_secret_post' }, refusal: /"client_secret_post" relies on a shared client secret/ },
    { label: 'client_secret_jwt', over: { token_endpoint_auth_method: 'client_secret_jwt' }, refusal: /"client_secret_jwt" relies on a shared client secret/ },
    { label: 'tls_client_auth (unknown here)', over: { token_endpoint_auth_method: 'tls_client_auth' }, refusal: /"tls_client_auth" is not supported; use "private_key_jwt"/ },
    { label: 'a method that is not a string', over: { token_endpoint_auth_method: ['private_key_jwt'] }, refusal: /must be the string "private_key_jwt"/ },
    { label: 'a client_secret sent along', over: { client_secret: 's3cret' }, refusal: /client_secret is not accepted/ },
    { label: 'an empty client_secret sent along', over: { client_secret: '' }, refusal: /client_secret is not accepted/ },
  ]);
});

describe('registration: token_endpoint_auth_signing_alg', () => {
  table([
    { label: 'ES256 with an EC key', over: { token_endpoint_auth_signing_alg: 'ES256' } },
    { label: 'EdDSA with an OKP key', over: { token_endpoint_auth_signing_alg: 'EdDSA' }, refusal: /EdDSA matches none of the keys in jwks/ },
    { label: 'HS256 (a shared-secret algorithm)', over: { token_endpoint_auth_signing_alg: 'HS256' }, refusal: /"HS256" is not supported; use one of ES256, EdDSA, PS256, RS256/ },
    { label: 'none', over: { token_endpoint_auth_signing_alg: 'none' }, refusal: /"none" is not supported/ },
    { label: 'a non-string alg', over: { token_endpoint_auth_signing_alg: 256 }, refusal: /256 is not supported/ },
  ]);
  it('accepts an alg that one key of several matches (kty, and alg when the key names one)', () => {
    assert.ok(register(body({ jwks: { keys: [ecKey, edKey] }, token_endpoint_auth_signing_alg: 'EdDSA' })).jwks);
    assert.ok(register(body({ jwks: { keys: [rsaKey] }, token_endpoint_auth_signing_alg: 'PS256' })).jwks);
    assert.ok(register(body({ jwks: { keys: [{ ...rsaKey, alg: 'RS256' }] }, token_endpoint_auth_signing_alg: 'RS256' })).jwks);
  });
  it('refuses an alg whose key type is there but whose key names another alg', () => {
    refused(() => register(body({ jwks: { keys: [{ ...rsaKey, alg: 'RS256' }] }, token_endpoint_auth_signing_alg: 'PS256' })), /PS256 matches none of the keys/, 'RS256 key for PS256');
  });
  it('does not check the alg against a jwks_uri (its keys are not known yet)', () => {
    assert.equal(register(body({ jwks: undefined, jwks_uri: 'https://partner.example.com/jwks', token_endpoint_auth_signing_alg: 'EdDSA' })).jwksUri, 'https://partner.example.com/jwks');
  });
});

describe('registration: grant types', () => {
  table([
    { label: 'no grant_types (client_credentials)', over: {}, check: (m) => assert.deepEqual(m.grantTypes, ['client_credentials']) },
    { label: 'every supported grant type, duplicates merged', over: { grant_types: ['client_credentials', TOKEN_EXCHANGE, 'refresh_token', 'client_credentials'] }, check: (m) => assert.deepEqual(m.grantTypes, ['client_credentials', TOKEN_EXCHANGE, 'refresh_token']) },
    { label: 'token exchange alone', over: { grant_types: [TOKEN_EXCHANGE] }, check: (m) => assert.deepEqual(m.grantTypes, [TOKEN_EXCHANGE]) },
    { label: 'authorization_code (a redirect flow)', over: { grant_types: ['authorization_code'] }, refusal: /grant type "authorization_code" needs browser redirects/ },
    { label: 'implicit (a redirect flow)', over: { grant_types: ['client_credentials', 'implicit'] }, refusal: /grant type "implicit" needs browser redirects/ },
    { label: 'password', over: { grant_types: ['password'] }, refusal: /grant type "password" is not supported; allowed: client_credentials/ },
    { label: 'jwt-bearer', over: { grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'] }, refusal: /is not supported/ },
    { label: 'an empty list', over: { grant_types: [] }, refusal: /grant_types must be a non-empty list/ },
    { label: 'a string instead of a list', over: { grant_types: 'client_credentials' }, refusal: /grant_types must be a non-empty list/ },
    { label: 'a list holding a non-string', over: { grant_types: ['client_credentials', 7] }, refusal: /grant_types must be a non-empty list/ },
  ]);
});

describe('registration: no redirects, DPoP always', () => {
  table([
    { label: 'empty redirect_uris and response_types', over: { redirect_uris: [], response_types: [] } },
    { label: 'a redirect_uri', over: { redirect_uris: ['https://app.example.com/cb'] }, refusal: /redirect_uris are not accepted/ },
    { label: 'redirect_uris that is not a list', over: { redirect_uris: 'https://app.example.com/cb' }, refusal: /redirect_uris must be a list; Sigil accepts only an empty one/ },
    { label: 'response_types code', over: { response_types: ['code'] }, refusal: /response_types are not accepted/ },
    { label: 'response_types that is not a list', over: { response_types: 'code' }, refusal: /response_types must be a list/ },
    { label: 'dpop_bound_access_tokens true', over: { dpop_bound_access_tokens: true } },
    { label: 'dpop_bound_access_tokens false', over: { dpop_bound_access_tokens: false }, refusal: /dpop_bound_access_tokens must be true or absent/ },
    { label: 'dpop_bound_access_tokens "true" (a string)', over: { dpop_bound_access_tokens: 'true' }, refusal: /dpop_bound_access_tokens must be true or absent/ },
  ]);
});

describe('registration: client_name', () => {
  table([
    { label: 'a name, trimmed', over: { client_name: '  Billing service  ' }, check: (m) => assert.equal(m.name, 'Billing service') },
    { label: 'a name of 200 characters', over: { client_name: 'n'.repeat(200) }, check: (m) => assert.equal(m.name.length, 200) },
    { label: 'a name of 201 characters', over: { client_name: 'n'.repeat(201) }, refusal: /client_name must be at most 200 characters/ },
    { label: 'an empty name', over: { client_name: ' ' }, refusal: /client_name must be a non-empty string/ },
    { label: 'a name with a newline', over: { client_name: 'a\nb' }, refusal: /client_name must be printable text/ },
    { label: 'a name with a bidi override', over: { client_name: 'safe\u202Eexe.txt' }, refusal: /client_name must be printable text/ },
    { label: 'a name that is not a string', over: { client_name: 42 }, refusal: /client_name must be a non-empty string/ },
  ]);
});

describe('registration: keys, exactly one of jwks and jwks_uri', () => {
  table([
    { label: 'jwks', over: {}, check: (m) => assert.equal(m.jwksUri, undefined) },
    { label: 'jwks_uri', over: { jwks: undefined, jwks_uri: 'https://partner.example.com/.well-known/jwks.json' }, check: (m) => { assert.equal(m.jwksUri, 'https://partner.example.com/.well-known/jwks.json'); assert.equal(m.jwks, undefined); } },
    { label: 'both jwks and jwks_uri', over: { jwks_uri: 'https://partner.example.com/jwks' }, refusal: /give exactly one of jwks or jwks_uri/ },
    { label: 'neither jwks nor jwks_uri', over: { jwks: undefined }, refusal: /give exactly one of jwks or jwks_uri/ },
    { label: 'jwks holding a private key member', over: { jwks: { keys: [{ ...ecKey, d: 'AAAA' }] } }, refusal: /^jwks: key 0 contains private or secret members \(d\)/ },
    { label: 'jwks with no keys', over: { jwks: { keys: [] } }, refusal: /^jwks: the JWKS must have a non-empty "keys" array/ },
    { label: 'jwks_uri over http', over: { jwks: undefined, jwks_uri: 'http://partner.example.com/jwks' }, refusal: /jwks_uri must use https/ },
    { label: 'jwks_uri on a private address', over: { jwks: undefined, jwks_uri: 'https://10.0.0.7/jwks' }, refusal: /private address/ },
    { label: 'jwks_uri with a space', over: { jwks: undefined, jwks_uri: 'https://partner.example.com/my jwks' }, refusal: /jwks_uri must be written in printable ASCII without spaces/ },
    { label: 'jwks_uri with a non-ASCII character', over: { jwks: undefined, jwks_uri: 'https://partner.example.com/jwks\u00e9' }, refusal: /printable ASCII/ },
    { label: 'an empty jwks_uri', over: { jwks: undefined, jwks_uri: '' }, refusal: /jwks_uri must be a non-empty string/ },
  ]);
  it('jwks_uri on loopback over http: refused by default, accepted under the development policy', () => {
    const loopback = body({ jwks: undefined, jwks_uri: 'http://127.0.0.1:8080/jwks' });
    refused(() => register(loopback), /jwks_uri must use https/, 'production policy');
    assert.equal(register(loopback, GRANT, { allowHttpLoopback: true, allowedHosts: [] }).jwksUri, 'http://127.0.0.1:8080/jwks');
  });
  it('jwks_uri on a private address: accepted when the operator allowed that host', () => {
    const internal = body({ jwks: undefined, jwks_uri: 'https://10.0.0.7/jwks' });
    assert.equal(register(internal, GRANT, { allowHttpLoopback: false, allowedHosts: ['10.0.0.7'] }).jwksUri, 'https://10.0.0.7/jwks');
  });
});

describe('registration: scope and audiences within what the initial access token grants', () => {
  table([
    { label: 'no scope: everything the token grants', over: {}, check: (m) => assert.deepEqual(m.scope, GRANT.scope) },
    { label: 'a narrower scope, duplicates and extra spaces dropped', over: { scope: ' orders:read  orders:read ' }, check: (m) => assert.deepEqual(m.scope, ['orders:read']) },
    { label: 'an empty scope: none', over: { scope: '' }, check: (m) => assert.deepEqual(m.scope, []) },
    { label: 'a scope the token does not grant', over: { scope: 'orders:read admin:all' }, refusal: /scope "admin:all" is not granted by your initial access token \(it grants: orders:read orders:write\)/ },
    { label: 'two scopes the token does not grant', over: { scope: 'a b' }, refusal: /scope "a", "b" are not granted/ },
    { label: 'scope as a list', over: { scope: ['orders:read'] }, refusal: /scope must be a space-delimited string/ },
    { label: 'no audiences: every audience the token grants', over: {}, check: (m) => assert.deepEqual(m.audiences, GRANT.audiences) },
    { label: 'one of the granted audiences', over: { audiences: ['https://api.example.com/billing', 'https://api.example.com/billing'] }, check: (m) => assert.deepEqual(m.audiences, ['https://api.example.com/billing']) },
    { label: 'an audience the token does not grant', over: { audiences: ['https://api.example.com/payroll'] }, refusal: /audiences "https:\/\/api.example.com\/payroll" is not granted/ },
    { label: 'audiences as a string', over: { audiences: 'https://api.example.com/orders' }, refusal: /audiences must be a list of URIs/ },
    { label: 'audiences holding a non-string', over: { audiences: [1] }, refusal: /audiences must be a list of URIs/ },
  ]);
  it('a token that grants nothing says so', () => {
    refused(() => register(body({ scope: 'orders:read' }), { scope: [], audiences: [] }), /it grants: none/, 'empty grant');
  });
});

describe('registration: what the registered client becomes', () => {
  it('ignores unknown metadata and every privilege a registrant might claim', () => {
    const m = register(body({
      software_id: 'x', logo_uri: 'https://x.example/logo.png', contacts: ['ops@example.com'], unknown_field: { nested: [1] },
      can_introspect: true, is_admin: true, serves: ['https://api.example.com/orders'], dpop: 'optional', client_id: 'chosen-by-me',
    }));
    assert.deepEqual(Object.keys(m).sort(), ['audiences', 'grantTypes', 'jwks', 'name', 'scope'], 'nothing unknown is carried into the metadata');
    const client = newRegisteredClient(m);
    assert.equal(client.canIntrospect, false);
    assert.equal(client.isAdmin, false);
    assert.deepEqual(client.serves, []);
    assert.equal(client.dpopRequired, true);
    assert.notEqual(client.clientId, 'chosen-by-me');
    assert.match(client.clientId, /^[0-9a-f]{32}$/);
    assert.notEqual(newRegisteredClient(m).clientId, client.clientId, 'a fresh id each time');
    assert.deepEqual({ ...client, clientId: undefined }, {
      clientId: undefined, name: DEFAULT_CLIENT_NAME, scope: GRANT.scope, audiences: GRANT.audiences, serves: [], grantTypes: ['client_credentials'],
      dpopRequired: true, canIntrospect: false, isAdmin: false, jwks: { keys: [ecKey] }, jwksUri: undefined, tokenBinding: 'dpop',
    });
  });

  it('the registration view answers the RFC 7591 fields, and the access token only when given', () => {
    const record: ClientRecord = { ...newRegisteredClient(register(body({ scope: 'orders:read' }))), status: 'active', createdAt: new Date(1_700_000_000_500), updatedAt: new Date() };
    const v: Record<string, unknown> = registrationView(record, ISSUER, 'rat-123');
    assert.equal(v.client_id_issued_at, 1_700_000_000);
    assert.equal(v.registration_access_token, 'rat-123');
    assert.equal(v.registration_client_uri, `${ISSUER}/register/${record.clientId}`);
    assert.equal(v.token_endpoint_auth_method, 'private_key_jwt');
    assert.equal(v.scope, 'orders:read');
    assert.deepEqual(v.response_types, []);
    assert.deepEqual(v.redirect_uris, []);
    assert.equal(v.dpop_bound_access_tokens, true);
    assert.deepEqual(v.jwks, { keys: [ecKey] });
    assert.equal('jwks_uri' in v, false);
    assert.equal('registration_access_token' in registrationView(record, ISSUER), false);
    const byUri: Record<string, unknown> = registrationView({ ...record, jwks: undefined, jwksUri: 'https://partner.example.com/jwks' }, ISSUER);
    assert.equal(byUri.jwks_uri, 'https://partner.example.com/jwks');
    assert.equal('jwks' in byUri, false);
    assert.equal(registrationClientUri(ISSUER, 'a/b c'), `${ISSUER}/register/a%2Fb%20c`);
  });
});

describe('initial access token grants (parseGrant)', () => {
  it('accepts scopes and audiences, duplicates merged, none at all too', () => {
    assert.deepEqual(parseGrant('a b a', ['https://api.example.com/x', 'https://api.example.com/x'], ISSUER), { scope: ['a', 'b'], audiences: ['https://api.example.com/x'] });
    assert.deepEqual(parseGrant(undefined, undefined, ISSUER), { scope: [], audiences: [] });
  });
  for (const [label, scope, audiences, message] of [
    ['the admin scope', 'sigil:admin', [], /reserved for the admin client/],
    ['a scope with a quote', 'a"b', [], /contains characters RFC 6749 does not allow/],
    ['scope as a list', ['a'], [], /scope must be a space-delimited string/],
    ['Sigil itself as audience', '', [ISSUER], /must not name Sigil itself/],
    ['the admin audience', '', [`${ISSUER}/admin`], /must not name Sigil itself/],
    ['an endpoint of Sigil as audience', '', [`${ISSUER}/token`], /must not name Sigil itself/],
    ['a relative audience', '', ['/orders'], /must be an absolute URI/],
    ['an audience with a fragment', '', ['https://api.example.com/x#y'], /without a fragment/],
    ['audiences as a string', '', 'https://api.example.com/x', /must be a list of at most 50 absolute URIs/],
  ] as const) {
    it(`refuses ${label}, as a RegistrationError`, () => refused(() => parseGrant(scope, audiences, ISSUER), message, label));
  }
});

describe('registration update (RFC 7592): only the keys may change', () => {
  let current: ClientRecord;
  const update = (b: unknown) => parseKeyUpdate(b, current, POLICY);
  before(() => {
    current = {
      ...newRegisteredClient(register(body({ client_name: 'Billing', grant_types: ['client_credentials', 'refresh_token'], scope: 'orders:read orders:write' }))),
      status: 'active', createdAt: new Date(), updatedAt: new Date(),
    };
  });

  it('accepts new jwks, or a switch to jwks_uri', () => {
    assert.deepEqual(update({ jwks: { keys: [edKey] } }), { jwks: { keys: [edKey] } });
    assert.deepEqual(update({ jwks_uri: 'https://partner.example.com/jwks' }), { jwksUri: 'https://partner.example.com/jwks' });
  });

  it('accepts the full view sent back, with unchanged values and the fields RFC 7592 says to ignore', () => {
    const view = registrationView(current, ISSUER, 'rat');
    const sentBack = { ...view, jwks: { keys: [edKey] }, client_secret_expires_at: 0, scope: 'orders:write orders:read orders:read', grant_types: ['refresh_token', 'client_credentials'] };
    assert.deepEqual(update(sentBack), { jwks: { keys: [edKey] } });
  });

  for (const [label, over, message] of [
    ['another client_id', { client_id: 'someone-else' }, /client_id does not match/],
    ['a new client_name', { client_name: 'Payroll' }, /client_name cannot be changed here/],
    ['other grant_types', { grant_types: ['client_credentials'] }, /grant_types cannot be changed here/],
    ['an unsupported grant type', { grant_types: ['password'] }, /grant type "password" is not supported/],
    ['a narrower scope', { scope: 'orders:read' }, /scope cannot be changed: it comes from the initial access token/],
    ['a wider scope', { scope: 'orders:read orders:write admin' }, /scope cannot be changed/],
    ['other audiences', { audiences: ['https://api.example.com/orders'] }, /audiences cannot be changed/],
    ['a client_secret', { client_secret: 'x' }, /client_secret is not accepted/],
    ['a secret auth method', { token_endpoint_auth_method: 'client_secret_basic' }, /relies on a shared client secret/],
    ['redirect_uris', { redirect_uris: ['https://app.example.com/cb'] }, /redirect_uris are not accepted/],
    ['dpop_bound_access_tokens false', { dpop_bound_access_tokens: false }, /must be true or absent/],
    ['both jwks and jwks_uri', { jwks_uri: 'https://partner.example.com/jwks' }, /exactly one of jwks or jwks_uri/],
    ['an alg none of the new keys has', { token_endpoint_auth_signing_alg: 'EdDSA' }, /EdDSA matches none of the keys in jwks/],
  ] as const) {
    it(`refuses ${label}`, () => refused(() => update({ jwks: { keys: [ecKey] }, ...over }), message, label));
  }

  it('refuses an update without keys', () => {
    refused(() => update({ client_name: 'Billing' }), /exactly one of jwks or jwks_uri/, 'no keys');
  });
  it('refuses a body that is not an object', () => {
    refused(() => update([]), /must be a JSON object/, 'array');
  });
});
