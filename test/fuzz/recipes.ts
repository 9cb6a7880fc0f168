// What the HTTP fuzzer sends, as fast-check arbitraries of *recipes* (plain data, so they shrink and
// print) and the code that renders a recipe into request bytes against a running Sigil: fresh,
// correctly signed assertions and proofs with one or more things wrong, so the fuzz reaches past the
// first check of every endpoint. Every public endpoint, with malformed methods, targets, versions,
// headers, framing, encodings, form parameters, JSON bodies and JWTs.
import { createHash, randomUUID, sign, type KeyObject } from 'node:crypto';
import { METHODS } from 'node:http';
import fc from 'fast-check';
import { rawRequestBytes } from '../support/raw-http.js';

export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** What the fuzzer holds to make requests valid up to the part it breaks. */
export interface Material {
  issuer: string;
  clientId: string;
  clientKey: KeyObject;
  clientKid: string;
  dpopKey: KeyObject;
  dpopJwk: Record<string, string>;
  /** a public JWK to register (a client's own key) */
  publicJwk: Record<string, string>;
  /** an access token of the client (a subject token, a token to introspect) */
  accessToken: string;
  refreshToken: string;
  initialAccessToken: string;
  registeredClientId: string;
  registrationAccessToken: string;
  statusListId: string;
  admin: { key: KeyObject; jwk: Record<string, string>; token: () => string };
}

// ---------------------------------------------------------------------------------------------
// JSON with edits: objects built from entries, so keys can repeat and values can be raw text

/** JSON text inserted verbatim (invalid escapes, deep nesting, numbers JSON.stringify cannot write) */
export interface Raw {
  raw: string;
}
const raw = (text: string): Raw => ({ raw: text });
const isRaw = (v: unknown): v is Raw => typeof v === 'object' && v !== null && 'raw' in v && Object.keys(v).length === 1;

export type Edit =
  | { op: 'set'; key: string; value: unknown }
  | { op: 'delete'; key: string }
  | { op: 'duplicate'; key: string; value: unknown }
  | { op: 'replace'; text: string };

function renderValue(v: unknown): string {
  if (isRaw(v)) return v.raw;
  return JSON.stringify(v) ?? 'null';
}

/** `base` with `edits` applied, as JSON text. */
export function renderJson(base: Record<string, unknown>, edits: Edit[]): string {
  const entries = new Map(Object.entries(base));
  const dupes: string[] = [];
  let replaced: string | undefined;
  for (const e of edits) {
    if (e.op === 'set') entries.set(e.key, e.value);
    else if (e.op === 'delete') entries.delete(e.key);
    else if (e.op === 'duplicate') dupes.push(`${JSON.stringify(e.key)}:${renderValue(e.value)}`);
    else replaced = e.text;
  }
  if (replaced !== undefined) return replaced;
  const parts = [...entries].map(([k, v]) => `${JSON.stringify(k)}:${renderValue(v)}`).concat(dupes);
  return `{${parts.join(',')}}`;
}

const nested = (depth: number, inner = '1') => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;

/** Values no field expects: wrong types, NUL, lone surrogates, huge, deep, out-of-range numbers. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 4 },
  {
    arbitrary: fc.constantFrom<unknown>(
      raw('"a\\u0000b"'), raw('"\\u0000"'), raw('"\\ud800"'), raw('"x\\udfff"'), raw('"\\ud800\\u0041"'), raw('1e400'), raw('-1e400'), raw('-0'),
      raw('9007199254740993'), raw('1.5'), raw('-1'), raw('0'), raw('""'), raw('[]'), raw('{}'), raw('null'), raw('true'), raw('false'),
      raw('"\\u001b[31m"'), raw('"\\n\\r\\t"'), raw('[null]'), raw('{"__proto__":{"polluted":1}}'), raw('{"constructor":{"prototype":{"x":1}}}'),
      raw('"\u202e\ufeff"'), raw('"%00"'), raw('"../../etc/passwd"'), raw('"\' OR 1=1--"'),
    ),
    weight: 4,
  },
  { arbitrary: fc.integer({ min: 1, max: 4000 }).map((d) => raw(nested(d))), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 4000 }).map((d) => raw(`${'{"a":'.repeat(d)}1${'}'.repeat(d)}`)), weight: 1 },
  { arbitrary: fc.integer({ min: 200, max: 12_000 }).map((n) => 'x'.repeat(n)), weight: 1 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 16 }), weight: 2 },
);

function editsOf(keys: string[]): fc.Arbitrary<Edit[]> {
  const key = fc.oneof({ arbitrary: fc.constantFrom(...keys), weight: 5 }, { arbitrary: fc.string({ maxLength: 6 }), weight: 1 });
  const edit: fc.Arbitrary<Edit> = fc.oneof(
    { arbitrary: fc.record({ op: fc.constant('set' as const), key, value: hostileValue }), weight: 6 },
    { arbitrary: fc.record({ op: fc.constant('delete' as const), key }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('duplicate' as const), key, value: hostileValue }), weight: 1 },
    {
      arbitrary: fc.record({
        op: fc.constant('replace' as const),
        text: fc.oneof(
          fc.constantFrom('', '[]', '1', '"x"', 'null', '{', '{"a":}', '{"a":1,}', '\u0000', '{}', '\ufeff{}', '[{}]', '{"a":"\\x"}', '{"a" 1}'),
          fc.string({ maxLength: 40 }),
          fc.integer({ min: 17, max: 30_000 }).map((d) => nested(d)),
        ),
      }),
      weight: 1,
    },
  );
  return fc.array(edit, { maxLength: 3 });
}

// ---------------------------------------------------------------------------------------------
// JWTs

export type SignatureRecipe = 'valid' | 'random' | 'empty' | 'dropped' | 'extra' | 'bad-chars' | 'other-key' | 'truncated';

export interface JwtRecipe {
  kind: 'jwt';
  header: Edit[];
  payload: Edit[];
  signature: SignatureRecipe;
}
export interface GarbageJwt {
  kind: 'garbage';
  text: string;
}
export type TokenRecipe = JwtRecipe | GarbageJwt;

const HEADER_KEYS = ['alg', 'typ', 'kid', 'jwk', 'crit', 'b64', 'x5c', 'jku', 'x5u', 'cty', 'zip', 'enc'];
const PAYLOAD_KEYS = ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'htm', 'htu', 'ath', 'nonce', 'scope', 'client_id', 'cnf', 'act', 'status', 'may_act'];

const signatureRecipe = fc.oneof(
  { arbitrary: fc.constant<SignatureRecipe>('valid'), weight: 8 },
  { arbitrary: fc.constantFrom<SignatureRecipe>('random', 'empty', 'dropped', 'extra', 'bad-chars', 'other-key', 'truncated'), weight: 2 },
);

const garbageJwt: fc.Arbitrary<GarbageJwt> = fc.record({
  kind: fc.constant('garbage' as const),
  text: fc.oneof(
    fc.constantFrom('', '.', '..', '...', 'a.b', 'a.b.c', 'a.b.c.d', 'a.b.c.d.e', 'eyJhbGciOiJub25lIn0.e30.', 'eyJhbGciOiJub25lIn0.e30', '*.*.*', 'e30.e30.e30', 'bnVsbA.bnVsbA.AA', 'W10.W10.AA'),
    fc.string({ maxLength: 60 }),
    fc.array(fc.base64String({ maxLength: 40 }).map((s) => s.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')), { minLength: 1, maxLength: 6 }).map((segs) => segs.join('.')),
    fc.integer({ min: 8000, max: 40_000 }).map((n) => `${'e'.repeat(n)}.e30.AA`),
  ),
});

/** A JWT with 0-3 edits to its header and payload and maybe a broken signature; mostly still signed right. */
export const jwtRecipe: fc.Arbitrary<TokenRecipe> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('jwt' as const), header: fc.constant<Edit[]>([]), payload: fc.constant<Edit[]>([]), signature: fc.constant<SignatureRecipe>('valid') }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('jwt' as const), header: editsOf(HEADER_KEYS), payload: editsOf(PAYLOAD_KEYS), signature: signatureRecipe }), weight: 6 },
  { arbitrary: garbageJwt, weight: 1 },
);

const b64 = (text: string | Buffer) => Buffer.from(text).toString('base64url');

/** The JWT `recipe` makes of a valid one (`header`, `payload`), signed with `key` (ES256). */
export function renderJwt(recipe: TokenRecipe, header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject, otherKey: KeyObject): string {
  if (recipe.kind === 'garbage') return recipe.text;
  const input = `${b64(renderJson(header, recipe.header))}.${b64(renderJson(payload, recipe.payload))}`;
  const signWith = (k: KeyObject) => sign('sha256', Buffer.from(input), { key: k, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  switch (recipe.signature) {
    case 'valid': return `${input}.${signWith(key)}`;
    case 'other-key': return `${input}.${signWith(otherKey)}`;
    case 'random': return `${input}.${b64(createHash('sha512').update(input).digest())}`;
    case 'empty': return `${input}.`;
    case 'dropped': return input;
    case 'extra': return `${input}.${signWith(key)}.${signWith(key)}`;
    case 'bad-chars': return `${input}.${signWith(key).slice(0, 20)}+/=`;
    case 'truncated': return `${input}.${signWith(key).slice(0, 40)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Form bodies

export type FormValue =
  | { kind: 'text'; text: string }
  | { kind: 'assertion'; jwt: TokenRecipe }
  | { kind: 'subject'; token: 'access' | 'refresh' | 'foreign'; jwt: TokenRecipe }
  | { kind: 'refresh'; mangle: 'none' | 'truncate' | 'extend' | 'case' };

export type FormEdit =
  | { op: 'drop'; index: number }
  | { op: 'duplicate'; index: number }
  | { op: 'set'; index: number; value: string }
  | { op: 'add'; name: string; value: string }
  | { op: 'append-raw'; text: string }
  | { op: 'raw-bytes'; bytes: number[] };

const junkText = fc.oneof(
  { arbitrary: fc.string({ maxLength: 30 }), weight: 3 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 20 }), weight: 2 },
  { arbitrary: fc.constantFrom('', ' ', '\u0000', 'a\u0000b', '\u0001', '\n', '\r\n', '\u007f', '%', '%%', '%zz', '%FF', '%C0%AF', '%E0%A4%A', '%00', '%0a', '+', '=', '&', 'a=b', '\ud800', '\ufffe', 'client_credentials ', 'CLIENT_CREDENTIALS', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'authorization_code', 'password', 'https://evil.example/', 'openid', 'sigil:admin', 'orders:read orders:read', 'x'.repeat(70_000)), weight: 3 },
  { arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => 'a'.repeat(n)), weight: 1 },
);

const PARAM_NAMES = [
  'grant_type', 'client_id', 'client_assertion', 'client_assertion_type', 'scope', 'resource', 'audience', 'subject_token', 'subject_token_type',
  'actor_token', 'actor_token_type', 'requested_token_type', 'refresh_token', 'token', 'token_type_hint', 'client_secret', 'code', 'redirect_uri',
  'request', 'request_uri', 'claims', 'authorization_details', 'dpop_jkt', 'nonce', '__proto__', 'constructor',
];

const formEdits: fc.Arbitrary<FormEdit[]> = fc.array(
  fc.oneof(
    { arbitrary: fc.record({ op: fc.constant('drop' as const), index: fc.nat(8) }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('duplicate' as const), index: fc.nat(8) }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('set' as const), index: fc.nat(8), value: junkText }), weight: 4 },
    { arbitrary: fc.record({ op: fc.constant('add' as const), name: fc.oneof(fc.constantFrom(...PARAM_NAMES), fc.string({ maxLength: 10 })), value: junkText }), weight: 3 },
    { arbitrary: fc.record({ op: fc.constant('append-raw' as const), text: fc.constantFrom('&', '&&', '=', '==', '&=x', '%', '%zz', '%FF%FE', 'a%00=b', '&scope[]=x', '&scope[0]=x', ';scope=x', '&a=%E2%82') }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('raw-bytes' as const), bytes: fc.array(fc.nat(255), { minLength: 1, maxLength: 12 }) }), weight: 1 },
  ),
  { maxLength: 3 },
);

export type Grant = 'client_credentials' | 'token_exchange' | 'refresh_token' | 'other';

export interface FormRecipe {
  kind: 'form';
  grant: Grant;
  /** client authentication: the assertion, or none, or a client_id only */
  auth: 'assertion' | 'none' | 'client_id';
  assertion: TokenRecipe;
  subject: FormValue;
  actor: TokenRecipe | undefined;
  token: FormValue;
  edits: FormEdit[];
}

export const formRecipe: fc.Arbitrary<FormRecipe> = fc.record({
  kind: fc.constant('form' as const),
  grant: fc.oneof(
    { arbitrary: fc.constant<Grant>('client_credentials'), weight: 5 },
    { arbitrary: fc.constantFrom<Grant>('token_exchange', 'refresh_token'), weight: 4 },
    { arbitrary: fc.constant<Grant>('other'), weight: 1 },
  ),
  auth: fc.oneof({ arbitrary: fc.constant('assertion' as const), weight: 8 }, { arbitrary: fc.constantFrom('none' as const, 'client_id' as const), weight: 1 }),
  assertion: jwtRecipe,
  subject: fc.oneof(
    fc.record({ kind: fc.constant('subject' as const), token: fc.constantFrom('access' as const, 'refresh' as const, 'foreign' as const), jwt: jwtRecipe }),
    fc.record({ kind: fc.constant('text' as const), text: junkText }),
  ),
  actor: fc.option(jwtRecipe, { freq: 4 }).map((v) => v ?? undefined),
  token: fc.oneof(
    fc.record({ kind: fc.constant('subject' as const), token: fc.constantFrom('access' as const, 'refresh' as const, 'foreign' as const), jwt: jwtRecipe }),
    fc.record({ kind: fc.constant('refresh' as const), mangle: fc.constantFrom('none' as const, 'truncate' as const, 'extend' as const, 'case' as const) }),
    fc.record({ kind: fc.constant('text' as const), text: junkText }),
  ),
  edits: formEdits,
});

// ---------------------------------------------------------------------------------------------
// Requests

export interface Endpoint {
  /** `{client}` is the registered client's id, `{id}` an id the fuzzer makes up, `{list}` a status list */
  path: string;
  methods: string[];
  body: 'token' | 'introspect' | 'json' | 'none';
  auth: 'none' | 'initial' | 'registration' | 'admin';
  /** the JSON body a valid request carries */
  json?: (m: Material, proof: () => string) => Record<string, unknown>;
}

const jwks = (m: Material) => ({ keys: [m.publicJwk] });

export const ENDPOINTS: Endpoint[] = [
  { path: '/token', methods: ['POST'], body: 'token', auth: 'none' },
  { path: '/introspect', methods: ['POST'], body: 'introspect', auth: 'none' },
  { path: '/revoke', methods: ['POST'], body: 'introspect', auth: 'none' },
  {
    path: '/register', methods: ['POST'], body: 'json', auth: 'initial',
    json: (m) => ({ client_name: 'fuzz partner', token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'], jwks: jwks(m), scope: 'orders:read' }),
  },
  { path: '/register/{client}', methods: ['GET', 'PUT'], body: 'json', auth: 'registration', json: (m) => ({ jwks: jwks(m) }) },
  { path: '/register/{id}', methods: ['GET', 'PUT', 'DELETE'], body: 'json', auth: 'registration', json: (m) => ({ jwks: jwks(m) }) },
  {
    path: '/admin/clients', methods: ['POST', 'GET'], body: 'json', auth: 'admin',
    json: (m) => ({ name: 'fuzz', jwks: jwks(m), scope: 'orders:read', audiences: ['https://api.example.com/fuzz'], grant_types: ['client_credentials'], dpop: 'required', can_introspect: false }),
  },
  { path: '/admin/clients/{id}', methods: ['GET'], body: 'none', auth: 'admin' },
  { path: '/admin/clients/{id}/revoke', methods: ['POST'], body: 'json', auth: 'admin', json: () => ({ reason: 'fuzz' }) },
  { path: '/admin/clients/{id}/jwks', methods: ['PUT'], body: 'json', auth: 'admin', json: (m) => ({ jwks: jwks(m) }) },
  { path: '/admin/tokens/revoke', methods: ['POST'], body: 'json', auth: 'admin', json: () => ({ jti: randomUUID(), reason: 'fuzz' }) },
  { path: '/admin/keys', methods: ['GET'], body: 'none', auth: 'admin' },
  {
    path: '/admin/registration-tokens', methods: ['POST', 'GET'], body: 'json', auth: 'admin',
    json: () => ({ scope: 'orders:read', audiences: ['https://api.example.com/fuzz'], uses: 1, expires_in: 60 }),
  },
  { path: '/admin/registration-tokens/{id}', methods: ['GET'], body: 'none', auth: 'admin' },
  { path: '/admin/registration-tokens/{id}/revoke', methods: ['POST'], body: 'none', auth: 'admin' },
  { path: '/admin/bootstrap', methods: ['POST'], body: 'json', auth: 'none', json: (_m, proof) => ({ proof: proof() }) },
  { path: '/.well-known/oauth-authorization-server', methods: ['GET', 'HEAD'], body: 'none', auth: 'none' },
  { path: '/.well-known/openid-configuration', methods: ['GET', 'HEAD'], body: 'none', auth: 'none' },
  { path: '/jwks', methods: ['GET', 'HEAD'], body: 'none', auth: 'none' },
  { path: '/status-lists', methods: ['GET'], body: 'none', auth: 'none' },
  { path: '/status-lists/{list}', methods: ['GET'], body: 'none', auth: 'none' },
  { path: '/status-lists/{id}', methods: ['GET'], body: 'none', auth: 'none' },
  { path: '/status-lists/events', methods: ['GET'], body: 'none', auth: 'none' },
  { path: '/health', methods: ['GET', 'HEAD'], body: 'none', auth: 'none' },
  { path: '/ready', methods: ['GET', 'HEAD'], body: 'none', auth: 'none' },
  { path: '/metrics', methods: ['GET'], body: 'none', auth: 'none' },
  { path: '/', methods: ['GET'], body: 'none', auth: 'none' },
  { path: '/{id}', methods: ['GET', 'POST'], body: 'none', auth: 'none' },
];

/** the OAuth endpoints, whose every refusal must be an RFC 6749 §5.2 JSON error */
export const OAUTH_PATHS = /^\/(token|introspect|revoke|register|admin)(\/|$)/;

export type TargetMutation =
  | 'exact' | 'upper' | 'trailing-slash' | 'double-slash' | 'percent-char' | 'query' | 'absolute' | 'asterisk' | 'long' | 'dot-segment'
  | 'nul' | 'control' | 'high-bytes' | 'fragment' | 'backslash' | 'empty-segment' | 'percent-junk';

export type AuthRecipe = 'valid' | 'none' | 'wrong-scheme' | 'mangled' | 'huge' | 'twice' | 'lowercase-scheme' | 'junk';
export type DpopRecipe = { kind: 'valid' } | { kind: 'none' } | { kind: 'twice' } | { kind: 'jwt'; jwt: TokenRecipe } | { kind: 'junk'; text: string };
export type Framing = 'length' | 'chunked' | 'chunked-extensions' | 'none' | 'short-then-close' | 'two-lengths' | 'length-and-chunked' | 'trailing-bytes';
export type ConnectionMode = 'single' | 'after-keepalive' | 'pipelined-after' | 'half-close';

export interface RequestRecipe {
  endpoint: number;
  methodPick: number;
  method: { kind: 'proper' } | { kind: 'other'; method: string } | { kind: 'junk'; text: string };
  target: TargetMutation;
  id: string;
  version: string;
  contentType: 'auto' | 'none' | string;
  auth: AuthRecipe;
  dpop: DpopRecipe;
  host: 'normal' | 'missing' | 'twice' | 'junk';
  extraHeaders: Array<[string, string]>;
  form: FormRecipe;
  json: Edit[];
  bootstrapProof: TokenRecipe;
  encoding: 'utf-8' | 'latin1-bytes' | 'bom' | 'utf-16';
  framing: Framing;
  connection: ConnectionMode;
}

const headerValue = fc.oneof(
  { arbitrary: fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, '')), weight: 4 },
  { arbitrary: fc.constantFrom('', ' ', '*', 'close', 'keep-alive', 'upgrade', 'Upgrade', 'websocket', 'h2c', '100-continue', 'gzip', 'deflate, br', 'chunked', 'identity', 'bytes=0-1', '0', '-1', '99999999999999999999', 'W/"x"', 'text/html', '*/*;q=0', '\u00ff\u00fe', 'a\u0000b', 'a\u0001b', 'a\tb'), weight: 4 },
  { arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => 'h'.repeat(n)), weight: 1 },
);
const HEADER_NAMES = [
  'X-Request-Id', 'Accept', 'Accept-Encoding', 'Accept-Language', 'If-None-Match', 'If-Modified-Since', 'Origin', 'Referer', 'Cookie', 'Range',
  'X-Forwarded-For', 'X-Forwarded-Host', 'X-Forwarded-Proto', 'Forwarded', 'Expect', 'Connection', 'Upgrade', 'Content-Encoding', 'Transfer-Encoding',
  'Keep-Alive', 'TE', 'Trailer', 'Via', 'Max-Forwards', 'Authorization', 'DPoP', 'Content-Type', 'Content-Length', 'Proxy-Authorization', 'User-Agent',
];
const extraHeader = fc.tuple(
  fc.oneof({ arbitrary: fc.constantFrom(...HEADER_NAMES), weight: 6 }, { arbitrary: fc.string({ minLength: 1, maxLength: 12 }).map((s) => s.replace(/[\r\n:]/g, '') || 'x'), weight: 1 }),
  headerValue,
);

const CONTENT_TYPES = [
  'application/json', 'application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded; charset=utf-8',
  'application/x-www-form-urlencoded; charset=latin1', 'application/x-www-form-urlencoded; charset="utf-8', 'APPLICATION/X-WWW-FORM-URLENCODED',
  'application/json; charset=utf-16', 'application/jwt', 'application/merge-patch+json', ';;;', 'application/', '*/*', 'application/json, application/json',
];

export const requestRecipe: fc.Arbitrary<RequestRecipe> = fc.record({
  endpoint: fc.nat(ENDPOINTS.length - 1),
  methodPick: fc.nat(3),
  method: fc.oneof(
    { arbitrary: fc.constant({ kind: 'proper' as const }), weight: 20 },
    { arbitrary: fc.record({ kind: fc.constant('other' as const), method: fc.constantFrom(...METHODS) }), weight: 3 },
    { arbitrary: fc.record({ kind: fc.constant('junk' as const), text: fc.constantFrom('get', 'Post', 'FROB', 'G E T', '', 'POST\u0000', 'GET\t', 'X'.repeat(100), 'PRI', 'HTTP/1.1') }), weight: 1 },
  ),
  target: fc.oneof(
    { arbitrary: fc.constant<TargetMutation>('exact'), weight: 24 },
    {
      arbitrary: fc.constantFrom<TargetMutation>(
        'upper', 'trailing-slash', 'double-slash', 'percent-char', 'query', 'absolute', 'asterisk', 'long', 'dot-segment', 'nul', 'control', 'high-bytes', 'fragment',
        'backslash', 'empty-segment', 'percent-junk',
      ),
      weight: 6,
    },
  ),
  id: fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constantFrom('x', '..', '%00', '%zz', 'a%2Fb', '-rf', "'", '%E2%80%AE', '0'.repeat(300))),
  version: fc.oneof({ arbitrary: fc.constant('HTTP/1.1'), weight: 40 }, { arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/1.2', 'HTTP/2.0', 'HTTP/0.9', 'http/1.1', 'HTTP/1.1 ', 'HTTP/11'), weight: 1 }),
  contentType: fc.oneof({ arbitrary: fc.constant('auto'), weight: 12 }, { arbitrary: fc.constant('none'), weight: 1 }, { arbitrary: fc.constantFrom(...CONTENT_TYPES), weight: 2 }),
  auth: fc.oneof({ arbitrary: fc.constant<AuthRecipe>('valid'), weight: 8 }, { arbitrary: fc.constantFrom<AuthRecipe>('none', 'wrong-scheme', 'mangled', 'huge', 'twice', 'lowercase-scheme', 'junk'), weight: 3 }),
  dpop: fc.oneof(
    { arbitrary: fc.constant<DpopRecipe>({ kind: 'valid' }), weight: 8 },
    { arbitrary: fc.constantFrom<DpopRecipe>({ kind: 'none' }, { kind: 'twice' }), weight: 1 },
    { arbitrary: fc.record({ kind: fc.constant('jwt' as const), jwt: jwtRecipe }), weight: 3 },
    { arbitrary: fc.record({ kind: fc.constant('junk' as const), text: headerValue }), weight: 1 },
  ),
  host: fc.oneof({ arbitrary: fc.constant('normal' as const), weight: 30 }, { arbitrary: fc.constantFrom('missing' as const, 'twice' as const, 'junk' as const), weight: 1 }),
  extraHeaders: fc.array(extraHeader, { maxLength: 3 }),
  form: formRecipe,
  json: editsOf(['client_name', 'name', 'jwks', 'jwks_uri', 'scope', 'audiences', 'grant_types', 'token_endpoint_auth_method', 'dpop', 'can_introspect', 'reason', 'jti', 'uses', 'expires_in', 'proof', 'keys', 'redirect_uris', 'client_secret', 'dpop_bound_access_tokens', 'token_endpoint_auth_signing_alg']),
  bootstrapProof: jwtRecipe,
  encoding: fc.oneof({ arbitrary: fc.constant('utf-8' as const), weight: 30 }, { arbitrary: fc.constantFrom('latin1-bytes' as const, 'bom' as const, 'utf-16' as const), weight: 1 }),
  framing: fc.oneof(
    { arbitrary: fc.constant<Framing>('length'), weight: 30 },
    { arbitrary: fc.constant<Framing>('chunked'), weight: 4 },
    { arbitrary: fc.constantFrom<Framing>('chunked-extensions', 'none', 'short-then-close', 'two-lengths', 'length-and-chunked', 'trailing-bytes'), weight: 2 },
  ),
  connection: fc.oneof(
    { arbitrary: fc.constant<ConnectionMode>('single'), weight: 20 },
    { arbitrary: fc.constantFrom<ConnectionMode>('after-keepalive', 'pipelined-after', 'half-close'), weight: 3 },
  ),
});

// ---------------------------------------------------------------------------------------------
// Rendering

export interface RenderedRequest {
  chunks: Buffer[];
  /** responses the bytes should get */
  expect: number;
  /** write each chunk only once the previous one is answered (keep-alive, not pipelining) */
  sequential: boolean;
  /** an event stream (GET /status-lists/events): it answers when something happens, maybe not before the fuzzer moves on */
  stream: boolean;
  head: boolean[];
  halfClose: boolean;
  /** the path of the request that is fuzzed (for the JSON error property), or undefined for a made-up target */
  path: string | undefined;
  method: string;
  summary: string;
}

function mutateTarget(path: string, m: TargetMutation): string {
  switch (m) {
    case 'exact': return path;
    case 'upper': return path.toUpperCase();
    case 'trailing-slash': return `${path}/`;
    case 'double-slash': return `/${path}`;
    case 'percent-char': return path.replace(/[a-z]/, (c) => `%${c.charCodeAt(0).toString(16)}`);
    case 'query': return `${path}?a=1&a=2&%zz=%00&x[]=1&${'q'.repeat(200)}`;
    case 'absolute': return `http://evil.example${path}`;
    case 'asterisk': return '*';
    case 'long': return `${path}?${'a'.repeat(20_000)}`;
    case 'dot-segment': return `/x/..${path}`;
    case 'nul': return `${path}%00`;
    case 'control': return `${path}%01%0d%0a`;
    case 'high-bytes': return `${path}\u00ff\u00fe`;
    case 'fragment': return `${path}#frag`;
    case 'backslash': return path.replace(/\//g, '\\');
    case 'empty-segment': return path.replace(/^\/([^/]+)/, '/$1//');
    case 'percent-junk': return `${path}%`;
  }
}

function formBody(r: FormRecipe, m: Material, endpoint: Endpoint, other: KeyObject): string {
  const now = Math.floor(Date.now() / 1000);
  const assertion = renderJwt(r.assertion, { alg: 'ES256', kid: m.clientKid }, { iss: m.clientId, sub: m.clientId, aud: m.issuer, iat: now, exp: now + 60, jti: randomUUID() }, m.clientKey, other);
  const tokenOf = (v: FormValue): string => {
    switch (v.kind) {
      case 'text': return v.text;
      case 'assertion': return assertion;
      case 'refresh': {
        const t = m.refreshToken;
        return v.mangle === 'none' ? t : v.mangle === 'truncate' ? t.slice(0, -3) : v.mangle === 'extend' ? `${t}AAAA` : t.toUpperCase();
      }
      case 'subject': {
        if (v.token === 'refresh') return m.refreshToken;
        if (v.token === 'access' && v.jwt.kind === 'jwt' && v.jwt.header.length === 0 && v.jwt.payload.length === 0) return m.accessToken;
        // a token the client made up in the shape of an access token, signed with its own key
        return renderJwt(v.jwt, { alg: 'ES256', typ: 'at+jwt', kid: m.clientKid }, {
          iss: m.issuer, sub: m.clientId, aud: 'https://api.example.com/orders', exp: now + 300, iat: now, jti: randomUUID(), client_id: m.clientId, scope: 'orders:read',
        }, m.clientKey, other);
      }
    }
  };
  const params: Array<[string, string]> = [];
  if (endpoint.body === 'token') {
    const grant = { client_credentials: 'client_credentials', token_exchange: TOKEN_EXCHANGE, refresh_token: 'refresh_token', other: 'urn:example:fuzz' }[r.grant];
    params.push(['grant_type', grant]);
    if (r.grant === 'token_exchange') {
      params.push(['subject_token', tokenOf(r.subject)], ['subject_token_type', ACCESS_TOKEN_TYPE], ['audience', 'https://api.example.com/orders']);
      if (r.actor) params.push(['actor_token', renderJwt(r.actor, { alg: 'ES256', typ: 'at+jwt' }, { sub: m.clientId, iss: m.issuer }, m.clientKey, other)], ['actor_token_type', ACCESS_TOKEN_TYPE]);
    } else if (r.grant === 'refresh_token') {
      params.push(['refresh_token', tokenOf(r.token.kind === 'refresh' ? r.token : { kind: 'refresh', mangle: 'none' })]);
    } else {
      params.push(['scope', 'orders:read']);
    }
  } else {
    params.push(['token', tokenOf(r.token)], ['token_type_hint', 'access_token']);
  }
  if (r.auth === 'assertion') params.push(['client_assertion_type', ASSERTION_TYPE], ['client_assertion', assertion]);
  else if (r.auth === 'client_id') params.push(['client_id', m.clientId]);
  const tail: string[] = [];
  for (const e of r.edits) {
    if (e.op === 'drop') params.splice(e.index % Math.max(params.length, 1), 1);
    else if (e.op === 'duplicate' && params.length) params.push(params[e.index % params.length]!);
    else if (e.op === 'set' && params.length) params[e.index % params.length] = [params[e.index % params.length]![0], e.value];
    else if (e.op === 'add') params.push([e.name, e.value]);
    else if (e.op === 'append-raw') tail.push(e.text);
    else if (e.op === 'raw-bytes') tail.push(Buffer.from(e.bytes).toString('latin1'));
  }
  return params.map(([k, v]) => `${formEncode(k)}=${formEncode(v)}`).join('&') + tail.join('');
}

/** application/x-www-form-urlencoded, byte by byte (a lone surrogate becomes U+FFFD, as any client would send it) */
function formEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9*\-._]/.test(c) ? c : byte === 0x20 ? '+' : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function dpopFor(m: Material, method: string, url: string, accessToken?: string): string {
  const now = Math.floor(Date.now() / 1000);
  const payload = { htm: method, htu: url, iat: now, jti: randomUUID(), ...(accessToken ? { ath: createHash('sha256').update(accessToken).digest('base64url') } : {}) };
  return renderJwt({ kind: 'jwt', header: [], payload: [], signature: 'valid' }, { alg: 'ES256', typ: 'dpop+jwt', jwk: m.dpopJwk }, payload, m.dpopKey, m.dpopKey);
}

/** Bytes for `r`: the fuzzed request, maybe after a valid one on the same connection. */
export function renderRequest(r: RequestRecipe, m: Material, otherKey: KeyObject): RenderedRequest {
  const endpoint = ENDPOINTS[r.endpoint]!;
  const properMethod = endpoint.methods[r.methodPick % endpoint.methods.length]!;
  const method = r.method.kind === 'proper' ? properMethod : r.method.kind === 'other' ? r.method.method : r.method.text;
  const path = endpoint.path.replace('{client}', m.registeredClientId).replace('{list}', m.statusListId).replace('{id}', encodeURIComponent(r.id).replace(/%25/g, '%'));
  const target = mutateTarget(path, r.target);
  const issuerUrl = `${m.issuer}${path}`;

  const headers: Array<[string, string]> = [];
  if (r.host === 'normal') headers.push(['Host', new URL(m.issuer).host]);
  else if (r.host === 'twice') headers.push(['Host', 'a.example'], ['Host', 'b.example']);
  else if (r.host === 'junk') headers.push(['Host', '[::1']);

  // credentials the endpoint wants, right or wrong
  const adminToken = endpoint.auth === 'admin' ? m.admin.token() : undefined;
  const bearer = endpoint.auth === 'initial' ? m.initialAccessToken : endpoint.auth === 'registration' ? m.registrationAccessToken : undefined;
  const scheme = adminToken ? 'DPoP' : 'Bearer';
  const credential = adminToken ?? bearer;
  if (credential !== undefined || r.auth === 'junk' || r.auth === 'huge') {
    const value = {
      valid: `${scheme} ${credential}`,
      none: undefined,
      'wrong-scheme': `Basic ${credential}`,
      mangled: `${scheme} ${credential?.slice(0, -2)}`,
      huge: `${scheme} ${'A'.repeat(12_000)}`,
      twice: `${scheme} ${credential}, ${scheme} ${credential}`,
      'lowercase-scheme': `${scheme.toLowerCase()} ${credential}`,
      junk: `${scheme} \u00ff${credential ?? ''}`,
    }[r.auth];
    if (value !== undefined) headers.push(['Authorization', value]);
  }
  if (endpoint.body === 'token' || endpoint.auth === 'admin') {
    const signer = endpoint.auth === 'admin' ? m.admin : { key: m.dpopKey, jwk: m.dpopJwk };
    const proof = () => (endpoint.auth === 'admin' ? dpopFor({ ...m, dpopKey: signer.key, dpopJwk: signer.jwk }, method, issuerUrl, adminToken) : dpopFor(m, method, issuerUrl));
    if (r.dpop.kind === 'valid') headers.push(['DPoP', proof()]);
    else if (r.dpop.kind === 'twice') headers.push(['DPoP', proof()], ['DPoP', proof()]);
    else if (r.dpop.kind === 'junk') headers.push(['DPoP', r.dpop.text]);
    else if (r.dpop.kind === 'jwt') {
      const now = Math.floor(Date.now() / 1000);
      headers.push(['DPoP', renderJwt(r.dpop.jwt, { alg: 'ES256', typ: 'dpop+jwt', jwk: signer.jwk }, {
        htm: method, htu: issuerUrl, iat: now, jti: randomUUID(), ...(adminToken ? { ath: createHash('sha256').update(adminToken).digest('base64url') } : {}),
      }, signer.key, otherKey)]);
    }
  }

  let body: Buffer | undefined;
  let autoType: string | undefined;
  if (endpoint.body === 'token' || endpoint.body === 'introspect') {
    body = Buffer.from(formBody(r.form, m, endpoint, otherKey), 'utf8');
    autoType = 'application/x-www-form-urlencoded';
  } else if (endpoint.body === 'json' && endpoint.json && !['GET', 'HEAD', 'DELETE'].includes(properMethod)) {
    const now = Math.floor(Date.now() / 1000);
    const proof = () => renderJwt(r.bootstrapProof, { alg: 'ES256', typ: 'sigil-bootstrap+jwt', jwk: m.dpopJwk }, { aud: `${m.issuer}/admin/bootstrap`, iat: now }, m.dpopKey, otherKey);
    body = Buffer.from(renderJson(endpoint.json(m, proof), r.json), 'utf8');
    autoType = 'application/json';
  }
  if (body && r.encoding === 'latin1-bytes') body = Buffer.from(body.toString('utf8').replace(/a/g, '\u00e4'), 'latin1');
  else if (body && r.encoding === 'bom') body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]);
  else if (body && r.encoding === 'utf-16') body = Buffer.from(body.toString('utf8'), 'utf16le');
  const contentType = r.contentType === 'auto' ? autoType : r.contentType === 'none' ? undefined : r.contentType;
  if (contentType) headers.push(['Content-Type', contentType]);
  for (const h of r.extraHeaders) headers.push(h);

  let requestBytes: Buffer;
  // a declared body the fuzzer does not send would keep the server waiting (a client's fault): close instead
  let halfClose = r.connection === 'half-close' || r.extraHeaders.some(([n]) => /^(content-length|transfer-encoding)$/i.test(n));
  const payload = body ?? Buffer.alloc(0);
  const line = (hs: Array<[string, string]>) => Buffer.from(`${method} ${target} ${r.version}\r\n${hs.map(([n, v]) => `${n}: ${v}`).join('\r\n')}${hs.length ? '\r\n' : ''}\r\n`, 'latin1');
  switch (r.framing) {
    case 'length':
    case 'none':
      requestBytes = body && r.framing === 'length' ? Buffer.concat([line([...headers, ['Content-Length', String(payload.length)]]), payload]) : line(headers);
      break;
    case 'chunked':
    case 'chunked-extensions': {
      const ext = r.framing === 'chunked-extensions' ? `;${'e'.repeat(20_000)}=1` : '';
      const chunks = payload.length ? [Buffer.from(`${payload.length.toString(16)}${ext}\r\n`), payload, Buffer.from('\r\n')] : [];
      requestBytes = Buffer.concat([line([...headers, ['Transfer-Encoding', 'chunked']]), ...chunks, Buffer.from('0\r\n\r\n')]);
      break;
    }
    case 'short-then-close':
      // declares more than it sends, then closes its side: the server must still answer
      requestBytes = Buffer.concat([line([...headers, ['Content-Length', String(payload.length + 10)]]), payload]);
      halfClose = true;
      break;
    case 'two-lengths':
      requestBytes = Buffer.concat([line([...headers, ['Content-Length', String(payload.length)], ['Content-Length', String(payload.length + 1)]]), payload]);
      break;
    case 'length-and-chunked':
      requestBytes = Buffer.concat([line([...headers, ['Content-Length', String(payload.length)], ['Transfer-Encoding', 'chunked']]), payload]);
      break;
    case 'trailing-bytes':
      // bytes after the body are the next request on the connection: garbage, answered 400
      requestBytes = Buffer.concat([line([...headers, ['Content-Length', String(payload.length)]]), payload, Buffer.from('\u0000garbage\r\n\r\n')]);
      break;
  }
  const head = method === 'HEAD';
  const stream = endpoint.path === '/status-lists/events' && method === 'GET';
  const summary = `${method} ${target.slice(0, 80)} ${r.version} [${r.framing}/${r.connection}] ${headers.map(([n]) => n).join(',')} body=${payload.length}B`;
  if (r.connection === 'after-keepalive' || r.connection === 'pipelined-after') {
    const first = rawRequestBytes('GET', '/health', [['Host', new URL(m.issuer).host]]);
    return {
      chunks: r.connection === 'pipelined-after' ? [Buffer.concat([first, requestBytes])] : [first, requestBytes],
      expect: 2, sequential: r.connection === 'after-keepalive', stream, head: [false, head], halfClose, path: r.target === 'exact' ? path : undefined, method, summary: `GET /health then ${summary}`,
    };
  }
  return { chunks: [requestBytes], expect: 1, sequential: false, stream, head: [head], halfClose, path: r.target === 'exact' ? path : undefined, method, summary };
}
