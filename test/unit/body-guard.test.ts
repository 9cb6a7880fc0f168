// The request guards (server/middleware.ts, server/json-body.ts, input/input-limits.ts) in a real Koa
// app on an in-process server bound to port 0, with nothing else behind them: the body size limit
// (declared and chunked), text bodies that must be UTF-8, control characters and malformed JWTs in
// form parameters (every value of a repeated one), JSON depth and unstorable strings, and the request
// target checks. A refused request never reaches the handler; an accepted one reaches it intact.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { jsonTextProblem, jwtShapeProblem, MAX_JSON_DEPTH, MAX_JWT_LENGTH } from '../../src/input/input-limits.js';
import { createLogger } from '../../src/log.js';
import { parseJsonBody } from '../../src/server/json-body.js';
import { BODY_LIMIT_BYTES, bodyGuard, errorBoundary, formParameterGuard, requestContext } from '../../src/server/middleware.js';
import { rawExchange, rawRequestBytes, type RawResponse } from '../support/raw-http.js';

const ISSUER = 'https://sigil.example.com';
const FORM = 'application/x-www-form-urlencoded';

let server: Server;
let port: number;

/** what the handler behind the guards saw */
interface Seen {
  reached: true;
  /** the body text the guard handed on (undefined for non-text types) */
  rawBody?: string;
  /** the bytes read back from the request stream, as oidc-provider reads them */
  streamed?: string;
  json?: { ok: boolean; value?: unknown; problem?: string };
}

before(async () => {
  const app = new Koa();
  app.use(requestContext(app, ISSUER, createLogger('silent')));
  app.use(errorBoundary());
  app.use(bodyGuard());
  app.use(formParameterGuard());
  app.use(async (ctx) => {
    if (ctx.path === '/throw/400') throw Object.assign(new Error('bad thing'), { status: 400, expose: true, error: 'invalid_grant' });
    if (ctx.path === '/throw/500') throw new Error('secret internals');
    if (ctx.path === '/throw/503') throw Object.assign(new Error('pg down'), { status: 503, error: 'temporarily_unavailable' });
    if (ctx.path === '/missing') return;
    const seen: Seen = { reached: true, rawBody: ctx.state.rawBody as string | undefined };
    if (ctx.path === '/json') seen.json = parseJsonBody(ctx);
    if (ctx.path === '/stream' && ctx.req.readable) {
      const chunks: Buffer[] = [];
      for await (const c of ctx.req.iterator({ destroyOnReturn: false })) chunks.push(c as Buffer);
      seen.streamed = Buffer.concat(chunks).toString('utf8');
    }
    ctx.body = seen;
  });
  // the Host check is Sigil's (answered as JSON), as in http-connections.ts
  server = createServer({ requireHostHeader: false }, app.callback());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

interface GuardAnswer {
  status: number;
  headers: Headers;
  json: Seen & { error?: string; error_description?: string };
}

async function post(path: string, body: string | Uint8Array<ArrayBuffer>, contentType = FORM, headers: Record<string, string> = {}): Promise<GuardAnswer> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { 'content-type': contentType, ...headers }, body });
  return { status: res.status, headers: res.headers, json: (await res.json()) as GuardAnswer['json'] };
}

function assertReached(a: GuardAnswer | RawResponse, label: string): Seen {
  const json = 'json' in a ? a.json : undefined;
  assert.equal(a.status, 200, `${label}: reaches the handler (got ${a.status} ${JSON.stringify(json)})`);
  assert.equal(json?.reached, true, label);
  return json as Seen;
}

function assertRefused(a: GuardAnswer | RawResponse, status: number, error: string, description: RegExp, label: string): void {
  const json = a.json as GuardAnswer['json'];
  assert.equal(a.status, status, `${label}: status (got ${JSON.stringify(json)})`);
  assert.equal(json?.reached, undefined, `${label}: the handler is not reached`);
  assert.equal(json?.error, error, label);
  assert.match(json?.error_description ?? '', description, label);
}

/** a compact JWS of the given header and payload texts (the signature is never checked here) */
const jws = (header: string, payload: string, signature = 'c2ln') => `${Buffer.from(header).toString('base64url')}.${Buffer.from(payload).toString('base64url')}.${signature}`;
const GOOD_JWT = jws('{"alg":"ES256","typ":"JWT"}', '{"iss":"c","sub":"c","aud":"https://sigil.example.com","exp":1}');
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

describe('body size', () => {
  it(`a body of exactly ${BODY_LIMIT_BYTES} bytes is read and handed on`, async () => {
    const body = `grant_type=client_credentials&pad=${'a'.repeat(BODY_LIMIT_BYTES - 34)}`;
    assert.equal(Buffer.byteLength(body), BODY_LIMIT_BYTES);
    assert.equal(assertReached(await post('/form', body), 'at the limit').rawBody, body);
  });

  it('one byte more, declared in Content-Length: 413 before anything is read, and the connection closes', async () => {
    const a = await post('/form', 'a'.repeat(BODY_LIMIT_BYTES + 1));
    assertRefused(a, 413, 'invalid_request', new RegExp(`request body exceeds ${BODY_LIMIT_BYTES} bytes`), 'over the limit');
    assert.equal(a.headers.get('connection'), 'close');
    // refused on the declaration alone: the answer comes although no byte of the body is ever sent
    const declared = await rawExchange(port, [rawRequestBytes('POST', '/form', [['Content-Type', FORM], ['Content-Length', String(BODY_LIMIT_BYTES + 1)]])], { deadlineMs: 5000 });
    assert.equal(declared.end, 'answered', 'answered without waiting for the body');
    assertRefused(declared.responses[0]!, 413, 'invalid_request', /request body exceeds/, 'declared only');
  });

  it('a chunked body (no Content-Length) is counted as it arrives: over the limit 413, at the limit accepted', async () => {
    const chunked = (total: number) => {
      const parts: Buffer[] = [rawRequestBytes('POST', '/form', [['Content-Type', FORM], ['Transfer-Encoding', 'chunked']])];
      for (let left = total; left > 0; left -= 4096) {
        const n = Math.min(4096, left);
        parts.push(Buffer.from(`${n.toString(16)}\r\n${'b'.repeat(n)}\r\n`));
      }
      parts.push(Buffer.from('0\r\n\r\n'));
      return parts;
    };
    const over = await rawExchange(port, chunked(BODY_LIMIT_BYTES + 1), { stopOnResponse: true });
    assertRefused(over.responses[0]!, 413, 'invalid_request', /request body exceeds/, 'chunked, over');
    const at = await rawExchange(port, chunked(BODY_LIMIT_BYTES));
    assert.equal(assertReached(at.responses[0]!, 'chunked, at the limit').rawBody?.length, BODY_LIMIT_BYTES);
  });

  it('a GET or a POST without a body is passed on without reading anything', async () => {
    const get = await rawExchange(port, [rawRequestBytes('GET', '/form', [['Content-Type', FORM]], 'x'.repeat(BODY_LIMIT_BYTES + 10))]);
    assert.equal(assertReached(get.responses[0]!, 'GET with a body').rawBody, undefined);
    assert.equal(assertReached(await post('/form', ''), 'empty POST').rawBody, undefined);
  });
});

describe('text bodies are UTF-8', () => {
  it('a charset other than UTF-8 is refused; utf-8 and "UTF8" are accepted', async () => {
    assertRefused(await post('/form', 'a=b', `${FORM}; charset=iso-8859-1`), 400, 'invalid_request', /only UTF-8 request bodies are accepted/, 'latin-1');
    assertRefused(await post('/json', '{}', 'application/json; charset=utf-16'), 400, 'invalid_request', /only UTF-8/, 'utf-16 JSON');
    assertReached(await post('/form', 'a=b', `${FORM}; charset=utf-8`), 'utf-8');
    assertReached(await post('/form', 'a=b', `${FORM}; charset="UTF8"`), 'quoted UTF8');
  });

  it('bytes that are not UTF-8 are refused in form, JSON and +json bodies, and passed on in other types', async () => {
    const bad = new Uint8Array([0x61, 0x3d, 0xff, 0xfe]);
    for (const type of [FORM, 'application/json', 'application/merge-patch+json']) {
      assertRefused(await post('/form', bad, type), 400, 'invalid_request', /the request body is not valid UTF-8/, type);
    }
    const other = assertReached(await post('/form', bad, 'application/octet-stream'), 'octet-stream');
    assert.equal(other.rawBody, undefined, 'no text is made of a binary body');
  });

  it('percent-escapes in a form must decode to UTF-8 too', async () => {
    assertRefused(await post('/form', 'name=%FF', FORM), 400, 'invalid_request', /not valid UTF-8/, '%FF');
    assertRefused(await post('/form', 'name=%C3', FORM), 400, 'invalid_request', /not valid UTF-8/, 'truncated sequence');
    assertRefused(await post('/form', 'name=%zz', FORM), 400, 'invalid_request', /not valid UTF-8/, 'malformed escape');
    assertReached(await post('/form', 'name=caf%C3%A9&x=%41%2B', FORM), 'é and ASCII escapes');
    // a JSON body is not a form: a literal %FF in it is just text
    assertReached(await post('/json', '{"a":"%FF"}', 'application/json'), 'JSON with %FF');
  });
});

describe('form parameters', () => {
  for (const [label, body] of [
    ['a raw control character', 'grant_type=client_credentials&scope=a\u0001b'],
    ['a raw newline', 'grant_type=client_credentials\n&scope=a'],
    ['a raw tab', 'scope=a\tb'],
    ['DEL', 'scope=a\u007fb'],
    ['%00', 'client_id=abc%00def'],
    ['%0a (lower case)', 'scope=a%0ab'],
    ['%1F', 'scope=a%1Fb'],
    ['%7F', 'scope=a%7Fb'],
    ['a control character in a parameter name', 'sc%00ope=a'],
  ] as const) {
    it(`refuses ${label}`, async () => {
      assertRefused(await post('/form', body), 400, 'invalid_request', /parameters must not contain control characters/, label);
    });
  }

  it('accepts what looks like a control escape but is not (%20, %2F, %80 as part of UTF-8)', async () => {
    assertReached(await post('/form', 'scope=a%20b&resource=https%3A%2F%2Fapi&name=%C2%80'), 'printable escapes');
  });

  it('refuses a malformed client_assertion with 401 invalid_client (RFC 7523 §3.2)', async () => {
    assertRefused(await post('/form', 'client_assertion=not.a-jwt'), 401, 'invalid_client', /client_assertion is not a compact JWS \(three segments\)/, 'two segments');
    assertRefused(await post('/form', `client_assertion=${GOOD_JWT}.x`), 401, 'invalid_client', /client_assertion is not a compact JWS/, 'four segments');
    assertRefused(await post('/form', `client_assertion=${'a'.repeat(MAX_JWT_LENGTH)}.b.c`), 401, 'invalid_client', new RegExp(`longer than ${MAX_JWT_LENGTH} characters`), 'too long');
  });

  it('refuses a malformed subject_token or actor_token with 400 invalid_request', async () => {
    assertRefused(await post('/form', 'subject_token=a.b!.c'), 400, 'invalid_request', /subject_token has a segment that is not base64url/, 'subject_token');
    const deep = jws(`{"alg":"ES256","x":${nested(MAX_JSON_DEPTH)}}`, '{}');
    assertRefused(await post('/form', `actor_token=${deep}`), 400, 'invalid_request', /actor_token has JSON that is nested deeper than 16 levels/, 'actor_token');
    const nul = jws('{"alg":"ES256"}', '{"sub":"a\\u0000b"}');
    assertRefused(await post('/form', `subject_token=${nul}`), 400, 'invalid_request', /subject_token has JSON that contains U\+0000/, 'U+0000 in the payload');
  });

  it('checks every value of a repeated JWT parameter, not only the first', async () => {
    assertRefused(await post('/form', `client_assertion=${GOOD_JWT}&client_assertion=broken`), 401, 'invalid_client', /client_assertion is not a compact JWS/, 'second value malformed');
    assertRefused(await post('/form', `subject_token=broken&subject_token=${GOOD_JWT}`), 400, 'invalid_request', /subject_token/, 'first value malformed');
    // well-formed duplicates are oidc-provider's to refuse (it answers "parameters must not be provided twice")
    assertReached(await post('/form', `client_assertion=${GOOD_JWT}&client_assertion=${GOOD_JWT}`), 'two well-formed values');
  });

  it('passes well-formed JWTs, and leaves a malformed `token` (introspection, revocation) to its endpoint', async () => {
    const deepest = jws(`{"alg":"ES256","x":${nested(MAX_JSON_DEPTH - 1)}}`, '{}');
    assertReached(await post('/form', `client_assertion=${GOOD_JWT}&subject_token=${deepest}&actor_token=${GOOD_JWT}`), 'well-formed');
    assertReached(await post('/form', 'token=not-a-jwt&token_type_hint=access_token'), 'token');
  });

  it('applies only to form bodies: JSON is checked by parseJsonBody', async () => {
    const seen = assertReached(await post('/json', '{"client_assertion":"broken","scope":"a\\tb"}', 'application/json'), 'JSON');
    assert.deepEqual(seen.json, { ok: true, value: { client_assertion: 'broken', scope: 'a\tb' } });
  });
});

describe('JSON bodies (parseJsonBody)', () => {
  const json = async (text: string) => assertReached(await post('/json', text, 'application/json'), text.slice(0, 40)).json!;

  it(`accepts ${MAX_JSON_DEPTH} levels of nesting and refuses ${MAX_JSON_DEPTH + 1}, before parsing`, async () => {
    assert.equal((await json(`{"a":${nested(MAX_JSON_DEPTH - 1)}}`)).ok, true);
    assert.deepEqual(await json(`{"a":${nested(MAX_JSON_DEPTH)}}`), { ok: false, problem: `the request body is nested deeper than ${MAX_JSON_DEPTH} levels` });
    // depth is refused even when the text would not parse: nothing recursive runs first
    assert.match((await json(`${'['.repeat(5000)}`)).problem ?? '', /nested deeper/);
  });

  it('does not count brackets inside strings, escaped quotes included', async () => {
    const v = await json(`{"a":"${'['.repeat(40)}","b":"\\"${'{'.repeat(40)}"}`);
    assert.equal(v.ok, true, JSON.stringify(v));
  });

  it('refuses U+0000 and lone surrogates (Postgres cannot store them); accepts a surrogate pair', async () => {
    assert.deepEqual(await json('{"client_name":"a\\u0000b"}'), { ok: false, problem: 'the request body contains U+0000' });
    assert.deepEqual(await json('{"client_name":"a\\ud800b"}'), { ok: false, problem: 'the request body contains a lone surrogate' });
    assert.deepEqual(await json('{"client_name":"a\\udc00"}'), { ok: false, problem: 'the request body contains a lone surrogate' });
    assert.deepEqual(await json('{"client_name":"\\ud83d\\ude00 \\\\u0000"}'), { ok: true, value: { client_name: '\u{1F600} \\u0000' } });
  });

  it('refuses text that is not JSON, and an empty body', async () => {
    assert.deepEqual(await json('{"a":'), { ok: false, problem: 'the request body is not valid JSON' });
    assert.equal((await post('/json', '', 'application/json')).json.json?.problem, 'the request body is not valid JSON');
  });
});

describe('the body handed on', () => {
  it('the handler behind the guard reads the very bytes that were sent from the request stream', async () => {
    const body = `grant_type=client_credentials&client_assertion=${GOOD_JWT}&name=caf%C3%A9`;
    const seen = assertReached(await post('/stream', body), 'stream');
    assert.equal(seen.rawBody, body);
    assert.equal(seen.streamed, body);
  });
});

describe('request target and errors (requestContext, errorBoundary)', () => {
  const raw = async (bytes: string) => (await rawExchange(port, [bytes])).responses[0]!;

  it('refuses control characters in the target, raw escapes included', async () => {
    for (const target of ['/clients/a%00b', '/clients/a%0Ab', '/x?y=%7f']) {
      assertRefused(await raw(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`), 400, 'invalid_request', /must not contain control characters/, target);
    }
    assertReached(await raw('GET /clients/a%20b HTTP/1.1\r\nHost: x\r\n\r\n'), '%20');
  });

  it('refuses an absolute-form target (it would choose the URL checks are made against)', async () => {
    assertRefused(await raw('GET http://evil.example/token HTTP/1.1\r\nHost: x\r\n\r\n'), 400, 'invalid_request', /request target must be a path/, 'absolute-form');
  });

  it('an HTTP/1.1 request needs a Host header (closed after the answer); HTTP/1.0 does not', async () => {
    const r = await raw('GET /form HTTP/1.1\r\n\r\n');
    assertRefused(r, 400, 'invalid_request', /needs a Host header/, 'no Host');
    assert.equal(r.headers.connection, 'close');
    assertReached(await raw('GET /form HTTP/1.0\r\n\r\n'), 'HTTP/1.0');
  });

  it('echoes a well-formed X-Request-Id and replaces any other', async () => {
    const given = await raw('GET /form HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc.DEF-1_2\r\n\r\n');
    assert.equal(given.headers['x-request-id'], 'abc.DEF-1_2');
    const replaced = await raw(`GET /form HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${'a'.repeat(65)}\r\n\r\n`);
    assert.match(replaced.headers['x-request-id'] ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-/);
  });

  it('turns what is thrown into JSON errors: exposed 4xx as given, 503 with Retry-After, anything else a bare 500', async () => {
    assertRefused(await raw('GET /throw/400 HTTP/1.1\r\nHost: x\r\n\r\n'), 400, 'invalid_grant', /^bad thing$/, 'exposed');
    const unavailable = await raw('GET /throw/503 HTTP/1.1\r\nHost: x\r\n\r\n');
    assertRefused(unavailable, 503, 'temporarily_unavailable', /cannot reach its storage/, '503');
    assert.equal(unavailable.headers['retry-after'], '1');
    const crash = await raw('GET /throw/500 HTTP/1.1\r\nHost: x\r\n\r\n');
    assertRefused(crash, 500, 'server_error', /^internal error$/, '500');
    assert.doesNotMatch(crash.text, /secret internals/);
    assertRefused(await raw('GET /missing HTTP/1.1\r\nHost: x\r\n\r\n'), 404, 'invalid_request', /no endpoint GET \/missing/, '404');
  });
});

describe('input limits as functions (jwtShapeProblem, jsonTextProblem)', () => {
  it(`a JWT of ${MAX_JWT_LENGTH} characters passes the length rule, one more does not`, () => {
    const base = jws('{"alg":"ES256"}', '{}', '');
    const exact = `${base}${'A'.repeat(MAX_JWT_LENGTH - base.length)}`;
    assert.equal(exact.length, MAX_JWT_LENGTH);
    assert.equal(jwtShapeProblem(exact), undefined);
    assert.equal(jwtShapeProblem(`${exact}A`), `is longer than ${MAX_JWT_LENGTH} characters`);
  });

  it('refuses what is not a compact JWS of three non-empty base64url segments', () => {
    for (const [value, problem] of [
      [undefined, 'is not a string'],
      [['a.b.c'], 'is not a string'],
      ['abc', 'is not a compact JWS (three segments)'],
      ['a.b', 'is not a compact JWS (three segments)'],
      ['a.b.c.d.e', 'is not a compact JWS (three segments)'],
      [jws('{"alg":"none"}', '{}', ''), 'has a segment that is not base64url'],
      ['a..c', 'has a segment that is not base64url'],
      ['a=.b.c', 'has a segment that is not base64url'],
      ['a+/.b.c', 'has a segment that is not base64url'],
    ] as const) {
      assert.equal(jwtShapeProblem(value), problem, String(value));
    }
  });

  it('jsonTextProblem honours its depth argument and skips escaped characters in strings', () => {
    assert.equal(jsonTextProblem('[[[]]]', 3), undefined);
    assert.equal(jsonTextProblem('[[[[]]]]', 3), 'is nested deeper than 3 levels');
    assert.equal(jsonTextProblem('[[],[],[],[]]', 2), undefined, 'depth, not the count of brackets');
    assert.equal(jsonTextProblem('["\\\\", [[]]]', 3), undefined, 'an escaped backslash ends before the quote');
    assert.equal(jsonTextProblem('["\\\\u0000"]'), undefined, 'a backslash then u0000 is text, not an escape');
    assert.equal(jsonTextProblem('["\\u0000"]'), 'contains U+0000');
  });
});
