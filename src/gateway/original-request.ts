// The request the client sent to the gateway, as each gateway describes it to the service
// (CONTRACT.md, "Gateways"), tried in this order:
//   nginx auth_request:           X-Original-Method + X-Original-URL (absolute: $scheme://$host$request_uri)
//   Caddy forward_auth, Traefik:  X-Forwarded-Method, -Proto, -Host, -Uri
//   Envoy ext_authz HTTP service: the request's own method, path and Host; scheme from X-Forwarded-Proto
// The public URL built here is what a DPoP proof's htu is compared against.
import type { IncomingMessage } from 'node:http';

export type Protocol = 'auth_request' | 'forwarded' | 'ext_authz';

export interface OriginalRequest {
  protocol: Protocol;
  method: string;
  /** the public URL, absolute */
  url: string;
  host: string;
  /** the path and query exactly as the client sent them */
  pathAndQuery: string;
}

/** RFC 9110 token */
const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** a host (name, IPv4, or bracketed IPv6) with an optional port */
const HOST = /^(?:[A-Za-z0-9\-._~]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const ABSOLUTE = /^(https?):\/\/([^/?#]+)([^#]*)$/i;

/** One value of a header that must appear exactly once; undefined when absent, null when repeated. */
function single(req: IncomingMessage, name: string): string | undefined | null {
  const values = req.headersDistinct[name];
  if (!values) return undefined;
  return values.length === 1 ? values[0]!.trim() : null;
}

export class BadOriginalRequest extends Error {
  override name = 'BadOriginalRequest';
}

function build(protocol: Protocol, method: string | null | undefined, proto: string, host: string | null | undefined, pathAndQuery: string): OriginalRequest {
  if (!method || !METHOD.test(method)) throw new BadOriginalRequest(`${protocol}: the original method is missing or malformed`);
  if (!host || !HOST.test(host)) throw new BadOriginalRequest(`${protocol}: the original host is missing or malformed`);
  const scheme = proto.toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') throw new BadOriginalRequest(`${protocol}: the original scheme must be http or https`);
  const path = pathAndQuery || '/';
  if (!path.startsWith('/')) throw new BadOriginalRequest(`${protocol}: the original path must start with "/"`);
  const url = `${scheme}://${host}${path}`;
  // what the verifier will parse: a host the URL parser refuses (port 99999, 1.2.3.999) is malformed here, not an outage later
  if (!URL.canParse(url)) throw new BadOriginalRequest(`${protocol}: the original URL is not a valid URL`);
  return { protocol, method: method.toUpperCase(), url, host, pathAndQuery: path };
}

/** The original request a trusted gateway describes; throws BadOriginalRequest when it is malformed. */
export function readOriginalRequest(req: IncomingMessage): OriginalRequest {
  const originalUrl = single(req, 'x-original-url');
  if (originalUrl !== undefined) {
    if (originalUrl === null) throw new BadOriginalRequest('auth_request: X-Original-URL appears more than once');
    // split by hand: new URL() would resolve "/a/../b" and hide it from route matching
    const m = ABSOLUTE.exec(originalUrl);
    if (!m) throw new BadOriginalRequest('auth_request: X-Original-URL must be an absolute http(s) URL ($scheme://$host$request_uri)');
    return build('auth_request', single(req, 'x-original-method'), m[1]!, m[2]!, m[3]!);
  }
  const forwardedUri = single(req, 'x-forwarded-uri');
  const forwardedMethod = single(req, 'x-forwarded-method');
  if (forwardedUri !== undefined || forwardedMethod !== undefined) {
    if (forwardedUri === undefined || forwardedUri === null) throw new BadOriginalRequest('forwarded: X-Forwarded-Uri must appear exactly once');
    const proto = single(req, 'x-forwarded-proto');
    const host = single(req, 'x-forwarded-host');
    if (proto === null) throw new BadOriginalRequest('forwarded: X-Forwarded-Proto appears more than once');
    return build('forwarded', forwardedMethod, proto ?? 'http', host === undefined ? req.headers.host : host, forwardedUri);
  }
  const proto = single(req, 'x-forwarded-proto');
  if (proto === null) throw new BadOriginalRequest('ext_authz: X-Forwarded-Proto appears more than once');
  return build('ext_authz', req.method, proto ?? 'http', req.headers.host, req.url ?? '/');
}
