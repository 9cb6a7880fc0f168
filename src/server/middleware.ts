// Small middleware, one job each, composed in app.ts.
import { randomUUID } from 'node:crypto';
import { parse as parseForm } from 'node:querystring';
import type Koa from 'koa';
import type { Context, Next } from 'koa';
import type { Logger } from '../log.js';
import { hasControlCharacter, jwtShapeProblem } from '../input/input-limits.js';
import { providerReadable } from '../oidc/body-handoff.js';
import { sendError } from './http-errors.js';
import { lingerAfterResponse } from './lingering-close.js';

/** oidc-provider reads at most 56 KiB; Sigil refuses anything larger up front with 413 */
export const BODY_LIMIT_BYTES = 56 * 1024;

/**
 * Request id, per-request logger, and URL pinning: every URL-bound check (DPoP htu, assertion aud)
 * is made against the ISSUER, whichever instance address the request reached.
 */
export function requestContext(app: Koa, issuer: string, log: Logger) {
  const { protocol, host } = new URL(issuer);
  const scheme = protocol.slice(0, -1);
  // on the app's request prototype, once: ctx.href, ctx.origin and oidc-provider's URLs follow
  Object.defineProperties(app.request, {
    protocol: { get: () => scheme, configurable: true },
    host: { get: () => host, configurable: true },
  });
  return async function requestContextMiddleware(ctx: Context, next: Next) {
    const given = ctx.get('x-request-id');
    const requestId = /^[\w.-]{1,64}$/.test(given) ? given : randomUUID();
    ctx.state.requestId = requestId;
    let child: Logger | undefined;
    // created only when something logs for this request
    Object.defineProperty(ctx.state, 'log', { get: () => (child ??= log.child({ requestId })) });
    ctx.set('X-Request-Id', requestId);
    // RFC 9112 §3.2 (Node's own check is off so that this answer is JSON like every other: http-connections.ts)
    if (ctx.req.httpVersionMinor >= 1 && ctx.req.headers.host === undefined) {
      ctx.set('Connection', 'close');
      lingerAfterResponse(ctx.req);
      sendError(ctx, 400, 'invalid_request', 'an HTTP/1.1 request needs a Host header');
      return;
    }
    // absolute-form targets (GET http://other/...) would let the request choose the URL it is checked against
    if (!ctx.originalUrl.startsWith('/')) {
      sendError(ctx, 400, 'invalid_request', 'request target must be a path');
      return;
    }
    // path parameters (client ids, jtis) reach SQL, which cannot hold U+0000; no URL needs a control
    if (hasControlCharacter(ctx.originalUrl)) {
      sendError(ctx, 400, 'invalid_request', 'the request target must not contain control characters');
      return;
    }
    await next();
  };
}

/** Anything thrown past the handlers becomes a JSON error; unknown routes too. Nothing crashes. */
export function errorBoundary() {
  return async function errorBoundaryMiddleware(ctx: Context, next: Next) {
    try {
      await next();
    } catch (err) {
      const e = err as { status?: number; statusCode?: number; expose?: boolean; message?: string; error?: string };
      const status = e.status ?? e.statusCode ?? 500;
      if (status < 500 && e.expose) {
        sendError(ctx, status, e.error ?? 'invalid_request', e.message);
      } else if (status === 503 && e.error === 'temporarily_unavailable') {
        // a store went away mid-request: same answer as the fail-closed gate
        sendError(ctx, 503, 'temporarily_unavailable', 'the server cannot reach its storage; retry shortly', { 'Retry-After': '1' });
      } else {
        (ctx.state.log as Logger | undefined)?.error({ err: { name: (err as Error).name, message: e.message, stack: (err as Error).stack } }, 'unhandled error');
        sendError(ctx, 500, 'server_error', 'internal error');
      }
      return;
    }
    if (ctx.status === 404 && ctx.body == null) sendError(ctx, 404, 'invalid_request', `no endpoint ${ctx.method} ${ctx.path}`);
    else if (ctx.status === 405 && (ctx.body == null || typeof ctx.body === 'string')) sendError(ctx, 405, 'invalid_request', `method ${ctx.method} is not allowed on ${ctx.path}`);
  };
}

const TEXT_BODIES = /^(application\/x-www-form-urlencoded|application\/json|application\/[\w.+-]*\+json)\b/i;

/**
 * Reads a request body once, refusing oversized (413) and, for text types, non-UTF-8 (400) bodies.
 * The bytes are then replayed to oidc-provider, which reads the stream itself.
 */
export function bodyGuard() {
  return async function bodyGuardMiddleware(ctx: Context, next: Next) {
    const hasBody = ctx.request.length !== undefined ? ctx.request.length > 0 : ctx.get('transfer-encoding') !== '';
    if (!hasBody || ctx.method === 'GET' || ctx.method === 'HEAD') return next();
    if (ctx.request.length !== undefined && ctx.request.length > BODY_LIMIT_BYTES) return tooLarge(ctx);
    let read: BodyRead | 'too_large';
    try {
      read = await readBody(ctx.req, BODY_LIMIT_BYTES);
    } catch {
      sendError(ctx, 400, 'invalid_request', 'the request body could not be read');
      return;
    }
    if (read === 'too_large') return tooLarge(ctx);
    const { chunks, size } = read;
    const body = Buffer.concat(chunks, size);
    if (ctx.request.length !== undefined && size !== ctx.request.length) {
      sendError(ctx, 400, 'invalid_request', 'the request body does not match its Content-Length');
      return;
    }
    const type = ctx.get('content-type');
    if (TEXT_BODIES.test(type)) {
      const charset = /;\s*charset=("?)([\w-]+)\1/i.exec(type)?.[2]?.toLowerCase();
      if (charset && charset !== 'utf-8' && charset !== 'utf8') {
        sendError(ctx, 400, 'invalid_request', 'only UTF-8 request bodies are accepted');
        return;
      }
      try {
        ctx.state.rawBody = new TextDecoder('utf-8', { fatal: true }).decode(body);
      } catch {
        sendError(ctx, 400, 'invalid_request', 'the request body is not valid UTF-8');
        return;
      }
      if (/x-www-form-urlencoded/i.test(type) && !isUtf8PercentEncoding(ctx.state.rawBody as string)) {
        sendError(ctx, 400, 'invalid_request', 'the request body is not valid UTF-8');
        return;
      }
    }
    // oidc-provider reads ctx.req itself: hand it the same bytes again
    ctx.req = providerReadable(ctx.req, body);
    return next();
  };
}

/** 413, readable by a client still sending its body: answered, then a bounded lingering close. */
function tooLarge(ctx: Context): void {
  ctx.set('Connection', 'close');
  lingerAfterResponse(ctx.req);
  sendError(ctx, 413, 'invalid_request', `request body exceeds ${BODY_LIMIT_BYTES} bytes`);
}

/** form parameters that carry JWTs, and what a malformed one is: RFC 7523 §3.2 for the assertion */
const JWT_PARAMETERS: ReadonlyArray<[name: string, status: number, error: string]> = [
  ['client_assertion', 401, 'invalid_client'],
  ['subject_token', 400, 'invalid_request'],
  ['actor_token', 400, 'invalid_request'],
];

/**
 * Form parameters no legitimate client sends, refused before oidc-provider parses them and before
 * they can reach SQL: any control character (RFC 6749 Appendix A allows none; Postgres cannot store
 * U+0000), and JWTs too long, not three segments or with JSON too deep or holding U+0000. A `token`
 * to introspect or revoke is not among them: RFC 7662/7009 answer a malformed one as inactive / 200.
 */
export function formParameterGuard() {
  return function formParameterGuardMiddleware(ctx: Context, next: Next) {
    const raw = ctx.state.rawBody as string | undefined;
    if (raw === undefined || !ctx.is('application/x-www-form-urlencoded')) return next();
    if (hasControlCharacter(raw)) return sendError(ctx, 400, 'invalid_request', 'parameters must not contain control characters');
    // parsed as oidc-provider parses it, so the values checked are the values it will see
    const form = parseForm(raw);
    for (const [name, status, error] of JWT_PARAMETERS) {
      const problem = valuesOf(form[name]).map(jwtShapeProblem).find((p) => p !== undefined);
      if (problem) return sendError(ctx, status, error, `${name} ${problem}`);
    }
    return next();
  };
}

const valuesOf = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/**
 * Percent-escapes in a form body must decode to UTF-8 too (%FF is as bad as a raw 0xFF byte), and be
 * well-formed. Only the parts with a suspicious escape are decoded: tokens are base64url.
 */
function isUtf8PercentEncoding(form: string): boolean {
  if (!form.includes('%')) return true;
  try {
    for (const part of form.split(/[&=]/)) {
      if (/%(?![0-7][0-9A-Fa-f])/.test(part)) decodeURIComponent(part);
    }
    return true;
  } catch {
    return false;
  }
}

interface BodyRead {
  chunks: Buffer[];
  size: number;
}

/**
 * Reads a body with stream events (cheaper than an async iterator on the token path), keeping at
 * most `limit` bytes; past it, gives up at once ('too_large') and leaves the rest to the lingering close.
 */
function readBody(req: NodeJS.ReadableStream, limit: number): Promise<BodyRead | 'too_large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: BodyRead | 'too_large' | Error) => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('error', onError);
      req.removeListener('close', onClose);
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else done('too_large');
    };
    const onEnd = () => done({ chunks, size });
    const onError = (err: Error) => done(err);
    const onClose = () => done(new Error('request closed before its body was read'));
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
    req.once('close', onClose);
  });
}
