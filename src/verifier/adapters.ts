// Adapters: each turns a framework's request into what verify() takes and a refusal into the answer.
// Types only: no framework is loaded at run time.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BlockList, isIPv6 } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { VerifierError } from './errors.js';
import type { AccessTokenClaims, RequestLike, Verifier, VerifyOptions } from './verifier.js';

export interface PublicUrlOptions {
  /** the API's public origin (and path prefix): the request's path is resolved against it */
  baseUrl?: string;
  /**
   * Addresses (or CIDR ranges: `10.0.0.0/8`, `::1/128`) of the reverse proxies whose
   * X-Forwarded-Proto and X-Forwarded-Host are believed; from anyone else they are ignored.
   */
  trustedProxies?: readonly string[];
  /**
   * The header in which those proxies pass the client's TLS certificate (e.g. `X-Client-Cert` with
   * nginx's $ssl_client_escaped_cert), for certificate-bound tokens; read only from `trustedProxies`.
   */
  clientCertificateHeader?: string;
}

function proxyList(ranges: readonly string[]): BlockList {
  const list = new BlockList();
  for (const range of ranges) {
    const [address, bits] = range.split('/') as [string, string | undefined];
    const type = isIPv6(address) ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list;
}

const proxyLists = new WeakMap<readonly string[], BlockList>();
const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v)?.split(',')[0]?.trim();

/**
 * A Node `http` request as verify() takes it. Its URL is the public URL when it can be known (a
 * `baseUrl`, or forwarded headers from a trusted proxy); otherwise the path, which the verifier
 * resolves against its own `baseUrl`. The client certificate comes along, for certificate-bound
 * tokens: from a trusted proxy's `clientCertificateHeader`, else over node:https the connection's
 * own (the server must request one: `requestCert: true`). The header from anyone else is not read.
 */
export function fromNodeRequest(req: IncomingMessage, options: PublicUrlOptions | string = {}): RequestLike {
  const opts = typeof options === 'string' ? { baseUrl: options } : options;
  const path = req.url ?? '/';
  const method = req.method ?? 'GET';
  const trusted = isFromTrustedProxy(req, opts);
  const certificate = (trusted ? proxyCertificate(req, opts) : undefined) ?? tlsClientCertificate(req);
  const withCertificate = (r: RequestLike): RequestLike => (certificate ? { ...r, clientCertificate: certificate } : r);
  if (trusted) {
    const proto = first(req.headers['x-forwarded-proto']);
    const host = first(req.headers['x-forwarded-host']) ?? req.headers.host;
    if (host && (proto === 'https' || proto === 'http')) return withCertificate({ method, url: new URL(path, `${proto}://${host}`).href, headers: req.headers });
  }
  return withCertificate({ method, url: opts.baseUrl ? new URL(path, opts.baseUrl).href : path, headers: req.headers });
}

function isFromTrustedProxy(req: IncomingMessage, opts: PublicUrlOptions): boolean {
  const peer = req.socket?.remoteAddress;
  if (!opts.trustedProxies?.length || !peer) return false;
  let list = proxyLists.get(opts.trustedProxies);
  if (!list) proxyLists.set(opts.trustedProxies, (list = proxyList(opts.trustedProxies)));
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(peer)?.[1];
  return mapped ? list.check(mapped, 'ipv4') : list.check(peer, isIPv6(peer) ? 'ipv6' : 'ipv4');
}

/** The certificate a trusted proxy passes in `clientCertificateHeader` (one value; an empty one is none). */
function proxyCertificate(req: IncomingMessage, opts: PublicUrlOptions): string | undefined {
  if (!opts.clientCertificateHeader) return undefined;
  const value = req.headers[opts.clientCertificateHeader.toLowerCase()];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The client certificate of a request that came over this process's own TLS (node:https), as DER. */
function tlsClientCertificate(req: IncomingMessage): Buffer | undefined {
  const socket = req.socket as Partial<TLSSocket> | undefined;
  if (!socket?.encrypted || typeof socket.getPeerCertificate !== 'function') return undefined;
  const raw = socket.getPeerCertificate()?.raw;
  return raw && raw.length > 0 ? raw : undefined;
}

/** Writes a refusal (status, WWW-Authenticate, DPoP-Nonce, Retry-After) to a Node response. */
export function sendRefusal(res: ServerResponse, err: VerifierError): void {
  res.writeHead(err.status, { ...err.headers, 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify({ error: err.code, error_description: err.description }));
}

/** Node `http`: resolves to the claims, or answers the refusal itself and resolves to undefined. */
export async function verifyNodeRequest(verify: Verifier, req: IncomingMessage, res: ServerResponse, options?: VerifyOptions & PublicUrlOptions): Promise<AccessTokenClaims | undefined> {
  try {
    return await verify(fromNodeRequest(req, options ?? {}), options);
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
export function koaVerifier(verify: Verifier, options?: VerifyOptions & PublicUrlOptions) {
  return async (ctx: KoaLikeContext, next: () => Promise<unknown>) => {
    try {
      ctx.state.sigil = await verify(fromNodeRequest(ctx.req, options ?? {}), options);
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
export function expressVerifier(verify: Verifier, options?: VerifyOptions & PublicUrlOptions) {
  return (req: IncomingMessage, res: ServerResponse & { locals?: Record<string, unknown> }, next: (err?: unknown) => void) => {
    verify(fromNodeRequest(req, options ?? {}), options).then(
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
export function fastifyVerifier(verify: Verifier, options?: VerifyOptions & PublicUrlOptions) {
  return async (request: FastifyLikeRequest, reply: FastifyLikeReply) => {
    try {
      request.sigil = await verify(fromNodeRequest(request.raw, options ?? {}), options);
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
