// What Sigil assumes about oidc-provider 9.13.3, one test per assumption, checked against
// oidc-provider itself (a Provider built here, no Sigil server). An upgrade that breaks one fails
// here, by name; each test says which Sigil module relies on it.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import Provider, { type Adapter, type AdapterPayload, type KoaContextWithOIDC } from 'oidc-provider';
import { buildTokenResponse } from 'oidc-provider/lib/helpers/grants.js';
import ServerChallenge from 'oidc-provider/lib/helpers/challenge.js';
import { providerReadable } from '../../src/oidc/body-handoff.js';
import { ERROR_REWRITES, rewriteRefusal, type CorrectedRoute } from '../../src/oidc/error-rewrites.js';
import { proofReplayId, refusalOf } from '../../src/oidc/replay-claims.js';
import { serverNonces } from '../../src/oidc/server-nonces.js';
import { tokenResponse } from '../../src/oidc/token-response.js';

const CLIENT = 'contract-client';
const OTHER_GRANT = 'urn:example:other-grant';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const X5T_RESOURCE = 'https://x5t.example';

/** what oidc-provider did, in order, for the request being looked at */
let events: string[] = [];
/** what the ReplayDetection adapter saw of the request it was asked from */
let seenInFind: { route?: string; clientId?: string; grantType?: unknown; hasAssertion: boolean } | undefined;
/** ids find() answers as seen: those upsert()ed, as a store would */
const seen = new Set<string>();
/** tokens extraTokenClaims was called with */
const extraTokenClaimsOf: object[] = [];

class RecordingAdapter implements Adapter {
  constructor(private readonly model: string) {}
  async find(id: string): Promise<AdapterPayload | undefined> {
    if (this.model !== 'ReplayDetection') return undefined;
    events.push(`find ${id}`);
    const ctx = Provider.ctx;
    seenInFind = { route: ctx?.oidc?.route, clientId: ctx?.oidc?.client?.clientId, grantType: ctx?.oidc?.params?.grant_type, hasAssertion: typeof ctx?.oidc?.params?.client_assertion === 'string' };
    if (!seen.has(id)) return undefined;
    const now = Math.floor(Date.now() / 1000);
    return { jti: id, kind: 'ReplayDetection', iat: now, exp: now + 60 };
  }
  async upsert(id: string, _payload: AdapterPayload, expiresIn: number): Promise<void> {
    if (this.model !== 'ReplayDetection') return;
    events.push(`upsert ${id} ${expiresIn}`);
    seen.add(id);
  }
  async findByUid(): Promise<undefined> {
    return undefined;
  }
  async findByUserCode(): Promise<undefined> {
    return undefined;
  }
  async consume(): Promise<void> {}
  async destroy(): Promise<void> {}
  async revokeByGrantId(): Promise<void> {}
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

describe('oidc-provider contract (the assumptions Sigil makes about 9.13.3)', () => {
  let server: Server;
  let issuer: string;
  let provider: Provider;
  let clientKey: CryptoKey;
  let clientJwk: JWK;

  const assertion = async (claims: Record<string, unknown> = {}) => new SignJWT({ jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'ES256' }).setIssuer(CLIENT).setSubject(CLIENT).setAudience(issuer).setIssuedAt().setExpirationTime('60s')
    .sign(clientKey);

  const post = async (path: string, form: Record<string, string>): Promise<Answer> => {
    const res = await fetch(`${issuer}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  before(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    clientKey = pair.privateKey;
    clientJwk = { ...(await exportJWK(pair.publicKey)), alg: 'ES256', use: 'sig', kid: 'c1' };
    const signing = await generateKeyPair('ES256', { extractable: true });
    const signingJwk = { ...(await exportJWK(signing.privateKey)), alg: 'ES256', kid: 's1' };

    server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    provider = new Provider(issuer, {
      adapter: RecordingAdapter as never,
      clients: [{
        client_id: CLIENT, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [clientJwk] } as never,
        grant_types: ['client_credentials'], response_types: [], redirect_uris: [], id_token_signed_response_alg: 'ES256',
      }],
      jwks: { keys: [signingJwk as never] },
      clientAuthMethods: ['private_key_jwt'],
      enabledJWA: { clientAuthSigningAlgValues: ['ES256'], idTokenSigningAlgValues: ['ES256'] },
      responseTypes: ['none'],
      scopes: [],
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        introspection: { enabled: true },
        revocation: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => 'https://api.example',
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({ audience: 'https://api.example', scope: '', accessTokenFormat: 'jwt', accessTokenTTL: 60, jwt: { sign: { alg: 'ES256' } } }),
        },
      },
      routes: { token: '/token', introspection: '/introspect', revocation: '/revoke' },
      ttl: { ClientCredentials: 60 },
      async extraTokenClaims(_ctx, token) {
        extraTokenClaimsOf.push(token);
        return {};
      },
      async assertJwtClientAuthClaimsAndHeader(_ctx, claims) {
        events.push(`hook ${String(claims.jti)}`);
      },
      async renderError(ctx, out) {
        ctx.type = 'application/json';
        ctx.body = out;
      },
    });
    provider.registerGrantType('client_credentials', async (ctx: KoaContextWithOIDC) => {
      events.push('grant');
      const token = new provider.ClientCredentials({ client: ctx.oidc.client! });
      token.resourceServer = new provider.ResourceServer('https://api.example', { audience: 'https://api.example', scope: '', accessTokenFormat: 'jwt', accessTokenTTL: 60, jwt: { sign: { alg: 'ES256' } } });
      // as Sigil's token endpoint binds a token to a certificate (token-endpoint.ts sign())
      if (ctx.oidc.params?.resource === X5T_RESOURCE) (token as unknown as Record<string, string>)['x5t#S256'] = 'dGh1bWJwcmludA';
      const value = await token.save();
      ctx.body = { access_token: value, saved: extraTokenClaimsOf.at(-1) === token, token_type: token.tokenType };
    }, ['scope', 'resource']);
    provider.registerGrantType(OTHER_GRANT, async (ctx: KoaContextWithOIDC) => {
      ctx.body = {};
    }, []);
    server.on('request', provider.callback());
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('the installed version is the pinned 9.13.3', () => {
    const require = createRequire(import.meta.url);
    const installed = JSON.parse(readFileSync(require.resolve('oidc-provider/package.json'), 'utf8')) as { version: string };
    assert.equal(installed.version, '9.13.3');
    const pinned = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
    assert.equal(pinned.dependencies['oidc-provider'], '9.13.3', 'package.json pins the exact version');
  });

  it('ReplayDetection.unique(iss, jti, exp) looks up sha256(iss + jti) (base64url) with find(), then upsert()s it with exp - now (proofReplayId is that id)', async () => {
    events = [];
    const jti = randomUUID();
    const exp = Math.floor(Date.now() / 1000) + 300;
    assert.equal(await provider.ReplayDetection.unique(CLIENT, jti, exp), true);
    const id = createHash('sha256').update(`${CLIENT}${jti}`).digest('base64url');
    assert.equal(proofReplayId(CLIENT, jti), id);
    assert.equal(events.length, 2);
    assert.equal(events[0], `find ${id}`);
    assert.match(events[1]!, new RegExp(`^upsert ${id} (299|300)$`));
    assert.equal(await provider.ReplayDetection.unique(CLIENT, jti, exp), false, 'a payload from find() is "seen"');
  });

  it('client authentication at /token: the assertion is verified and passed to assertJwtClientAuthClaimsAndHeader, then its jti is claimed (one find, one upsert), then the grant runs', async () => {
    events = [];
    const jti = randomUUID();
    const answer = await post('/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion({ jti }) });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const id = createHash('sha256').update(`${CLIENT}${jti}`).digest('base64url');
    assert.deepEqual(events.map((e) => e.replace(/ \d+$/, '')), [`hook ${jti}`, `find ${id}`, `upsert ${id}`, 'grant']);
  });

  it('inside the adapter\'s find(), Provider.ctx is the request: route, authenticated client, grant_type and client_assertion are known (ReplayClaims reads them)', async () => {
    seenInFind = undefined;
    await post('/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion() });
    assert.deepEqual(seenInFind, { route: 'token', clientId: CLIENT, grantType: 'client_credentials', hasAssertion: true });
    assert.equal(typeof (Provider.ctx as unknown), 'undefined', 'no request outside one');
  });

  it('a seen assertion is refused with invalid_client "client assertion tokens must only be used once" (Sigil\'s held answer says the same)', async () => {
    const jti = randomUUID();
    seen.add(createHash('sha256').update(`${CLIENT}${jti}`).digest('base64url'));
    events = [];
    const answer = await post('/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion({ jti }) });
    assert.equal(answer.status, 401);
    assert.equal(answer.body.error, 'invalid_client');
    assert.ok(!events.includes('grant'), 'the grant does not run');
    let detail: string | undefined;
    provider.once('grant.error', (_ctx: unknown, err: { error_detail?: string }) => (detail = err.error_detail));
    await post('/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion({ jti }) });
    assert.equal(detail, 'client assertion tokens must only be used once');
    const sigils = refusalOf('replayed', 'assertion')!;
    assert.equal(sigils.error, 'invalid_client');
    assert.equal((sigils as { error_detail?: string }).error_detail, detail);
  });

  it('a request refused after client authentication (a duplicated parameter) had its assertion claimed and never reaches the grant (why ReplayClaims.settle() exists)', async () => {
    events = [];
    const body = new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion() });
    body.append('scope', 'a');
    body.append('scope', 'b');
    const res = await fetch(`${issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
    assert.ok(events.some((e) => e.startsWith('find ')), 'the assertion was claimed');
    assert.ok(!events.includes('grant'));
  });

  it('a refusal at /token is emitted as grant.error(ctx, err) with the real reason in err.error_detail (Sigil\'s onRefused records it)', async () => {
    let emitted: { route?: string; error?: string; detail?: string } | undefined;
    provider.once('grant.error', (ctx: KoaContextWithOIDC, err: { error?: string; error_detail?: string }) => (emitted = { route: ctx.oidc?.route, error: err.error, detail: err.error_detail }));
    const replayed = await assertion();
    await post('/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: replayed });
    await post('/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: replayed });
    assert.deepEqual(emitted, { route: 'token', error: 'invalid_client', detail: 'client assertion tokens must only be used once' });
  });

  for (const [route, path] of [['introspection', '/introspect'], ['revocation', '/revoke']] as const) {
    it(`${route}: a JWT-shaped token is refused with unsupported_token_type once the client authenticated (Sigil answers it itself, provider.ts)`, async () => {
      const jwtShaped = `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.e30.sig`;
      const answer = await post(path, { token: jwtShaped, client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion() });
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
      assert.equal(answer.body.error, 'unsupported_token_type');
    });
  }

  it('extraTokenClaims(ctx, token) is called by token.save() with the very token saved (pendingClaims is keyed by it)', async () => {
    const answer = await post('/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion() });
    assert.equal(answer.body.saved, true);
  });

  it('a token whose x5t#S256 property is set is a JWT with cnf.x5t#S256 and token type Bearer (token-endpoint.ts sign(), RFC 8705 §3)', async () => {
    const answer = await post('/token', { grant_type: 'client_credentials', resource: X5T_RESOURCE, client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion() });
    const payload = JSON.parse(Buffer.from(String(answer.body.access_token).split('.')[1]!, 'base64url').toString()) as { cnf?: Record<string, string> };
    assert.deepEqual(payload.cnf, { 'x5t#S256': 'dGh1bWJwcmludA' });
    assert.equal(answer.body.token_type, 'Bearer');
  });

  const produce: Record<string, (route: CorrectedRoute) => Promise<Answer>> = {
    'no client authentication mechanism provided': (route) => post(route === 'token' ? '/token' : route === 'introspection' ? '/introspect' : '/revoke', { grant_type: 'client_credentials', token: 'x' }),
    'invalid client_assertion format': () => post('/token', { grant_type: 'client_credentials', client_id: CLIENT, client_assertion_type: ASSERTION_TYPE, client_assertion: 'not-a-jwt' }),
    'requested grant type is not allowed for this client': async () => post('/token', { grant_type: OTHER_GRANT, client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion() }),
  };
  for (const rewrite of ERROR_REWRITES) {
    for (const route of rewrite.routes) {
      it(`rewritten refusal at ${route}: oidc-provider answers 400 invalid_request "${rewrite.description}" (${rewrite.rule})`, async () => {
        const make = produce[rewrite.description];
        assert.ok(make, 'every rewrite has a way to provoke it here');
        const answer = await make(route);
        assert.equal(answer.status, 400);
        assert.equal(answer.body.error, 'invalid_request');
        assert.equal(answer.body.error_description, rewrite.description);
        assert.equal(rewriteRefusal(route, answer), true);
        assert.equal(answer.status, rewrite.status);
        assert.equal(answer.body.error, rewrite.error);
      });
    }
  }

  /** a server that reads the body first, as Sigil's body guard does, then hands the request to oidc-provider as `handOff` makes it */
  async function afterBodyRead(handOff: (req: IncomingMessage, body: Buffer) => IncomingMessage, form: Record<string, string>): Promise<Answer> {
    const reading = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => void provider.callback()(handOff(req, Buffer.concat(chunks)), res));
    });
    await new Promise<void>((resolve) => reading.listen(0, '127.0.0.1', resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${(reading.address() as AddressInfo).port}/token`, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form), signal: AbortSignal.timeout(10_000),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    } finally {
      await new Promise<void>((resolve) => reading.close(() => resolve()));
    }
  }
  const malformedAssertion = { grant_type: 'client_credentials', client_id: CLIENT, client_assertion_type: ASSERTION_TYPE, client_assertion: 'not-a-jwt' };

  it('body hand-off: the parser reads a readable ctx.req through req.iterator(), so bytes Sigil already read reach it (providerReadable)', async () => {
    const answer = await afterBodyRead(providerReadable, malformedAssertion);
    assert.equal(answer.body.error_description, 'invalid client_assertion format', 'the form was parsed from the handed-over bytes');
  });

  it('body hand-off: a pre-parsed body is accepted but makes oidc-provider print a WARNING (not a JSON log line), which is why Sigil hands over a stream', async () => {
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => void warnings.push(args.join(' '));
    try {
      const answer = await afterBodyRead((req, body) => Object.assign(Object.create(req, { readable: { value: false } }), { body: body.toString('utf8') }) as IncomingMessage, malformedAssertion);
      assert.equal(answer.body.error_description, 'invalid client_assertion format');
    } finally {
      console.warn = warn;
    }
    assert.ok(warnings.some((w) => w.includes('oidc-provider WARNING') && w.includes('already parsed request body')), JSON.stringify(warnings));
  });

  it('deep import lib/helpers/grants.js buildTokenResponse(provider, {...}): maps to RFC 6749 §5.1 members and leaves undefined ones out', () => {
    assert.equal(typeof buildTokenResponse, 'function');
    assert.deepEqual(buildTokenResponse(provider, { accessToken: 'at', expiresIn: 60, scope: undefined, tokenType: 'DPoP', refreshToken: 'rt', issuedTokenType: 'urn:x' }), {
      access_token: 'at', expires_in: 60, token_type: 'DPoP', refresh_token: 'rt', issued_token_type: 'urn:x',
    });
    assert.deepEqual(tokenResponse(provider, { accessToken: 'at', expiresIn: 5, scope: 'a b', tokenType: 'Bearer' }), { access_token: 'at', expires_in: 5, scope: 'a b', token_type: 'Bearer' });
  });

  it('deep import lib/helpers/challenge.js ServerChallenge(secret, info): stateless nonces every holder of the secret accepts', () => {
    assert.equal(typeof ServerChallenge, 'function');
    const secret = Buffer.alloc(32, 7);
    const one = serverNonces(secret, 'DPoP');
    const nonce = one.nextChallenge();
    assert.equal(typeof nonce, 'string');
    assert.equal(new ServerChallenge(secret, 'DPoP').checkChallenge(nonce), true, 'another instance with the secret accepts it');
    assert.equal(serverNonces(Buffer.alloc(32, 8), 'DPoP').checkChallenge(nonce), false, 'another secret does not');
    assert.equal(one.checkChallenge(`${nonce.slice(0, -1)}A`) && one.checkChallenge('x'), false);
  });
});
