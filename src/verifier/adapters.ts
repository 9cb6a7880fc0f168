// Adapters: each turns a framework's request into what verify() takes and a refusal into the answer.
// Types only: no framework is loaded at run time.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { VerifierError } from './errors.js';
import type { AccessTokenClaims, RequestLike, Verifier, VerifyOptions } from './verifier.js';

/** A Node `http` request: its URL is a path, resolved against the verifier's `baseUrl` (or `baseUrl` here). */
export function fromNodeRequest(req: IncomingMessage, baseUrl?: string): RequestLike {
  const path = req.url ?? '/';
  return { method: req.method ?? 'GET', url: baseUrl ? new URL(path, baseUrl).href : path, headers: req.headers };
}

/** Writes a refusal (status, WWW-Authenticate, DPoP-Nonce, Retry-After) to a Node response. */
export function sendRefusal(res: ServerResponse, err: VerifierError): void {
  res.writeHead(err.status, { ...err.headers, 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify({ error: err.code, error_description: err.description }));
}

/** Node `http`: resolves to the claims, or answers the refusal itself and resolves to undefined. */
export async function verifyNodeRequest(verify: Verifier, req: IncomingMessage, res: ServerResponse, options?: VerifyOptions): Promise<AccessTokenClaims | undefined> {
  try {
    return await verify(fromNodeRequest(req), options);
  } catch (err) {
    if (!(err instanceof VerifierError)) throw err;
    sendRefusal(res, err);
    return undefined;
  }
}

interface KoaLikeContext {
  req: IncomingMessage;
  state: Record<string, unknown>;
  status: number;
  body: unknown;
  set(headers: Record<string, string>): void;
}

/** Koa middleware: the claims go to `ctx.state.sigil`. */
export function koaVerifier(verify: Verifier, options?: VerifyOptions) {
  return async (ctx: KoaLikeContext, next: () => Promise<unknown>) => {
    try {
      ctx.state.sigil = await verify(fromNodeRequest(ctx.req), options);
    } catch (err) {
      if (!(err instanceof VerifierError)) throw err;
      ctx.set(err.headers);
      ctx.status = err.status;
      ctx.body = { error: err.code, error_description: err.description };
      return;
    }
    await next();
  };
}

/** Express middleware: the claims go to `res.locals.sigil`. */
export function expressVerifier(verify: Verifier, options?: VerifyOptions) {
  return (req: IncomingMessage, res: ServerResponse & { locals?: Record<string, unknown> }, next: (err?: unknown) => void) => {
    verify(fromNodeRequest(req), options).then(
      (claims) => {
        (res.locals ??= {}).sigil = claims;
        next();
      },
      (err: unknown) => (err instanceof VerifierError ? sendRefusal(res, err) : next(err)),
    );
  };
}

interface FastifyLikeRequest {
  raw: IncomingMessage;
  sigil?: AccessTokenClaims;
}
interface FastifyLikeReply {
  code(status: number): FastifyLikeReply;
  headers(h: Record<string, string>): FastifyLikeReply;
  send(body: unknown): unknown;
}

/** Fastify onRequest/preHandler hook: the claims go to `request.sigil`. */
export function fastifyVerifier(verify: Verifier, options?: VerifyOptions) {
  return async (request: FastifyLikeRequest, reply: FastifyLikeReply) => {
    try {
      request.sigil = await verify(fromNodeRequest(request.raw), options);
    } catch (err) {
      if (!(err instanceof VerifierError)) throw err;
      return reply.code(err.status).headers(err.headers).send({ error: err.code, error_description: err.description });
    }
  };
}

/** The Fetch API (Hono, Deno, Bun, workers): the claims, or the Response to answer with. */
export async function verifyFetchRequest(verify: Verifier, request: Request, options?: VerifyOptions): Promise<{ claims: AccessTokenClaims } | { response: Response }> {
  try {
    return { claims: await verify(request, options) };
  } catch (err) {
    if (!(err instanceof VerifierError)) throw err;
    return {
      response: new Response(JSON.stringify({ error: err.code, error_description: err.description }), {
        status: err.status,
        headers: { ...err.headers, 'content-type': 'application/json', 'cache-control': 'no-store' },
      }),
    };
  }
}
