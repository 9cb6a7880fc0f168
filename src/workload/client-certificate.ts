// Where a request's client certificate comes from: Sigil's own TLS listener (the certificate the
// client presented in the handshake, with the intermediates it sent), or the header a TLS-terminating
// proxy sets (TLS_CLIENT_CERT_HEADER), believed only when the request's socket peer is one of
// TLS_TRUSTED_PROXIES. Sets ctx.state.clientCertificate (a PresentedCertificate) and nothing else:
// whether the certificate authenticates anyone is certificate-auth.ts's business.
//
// The header from any other address is REFUSED (400 invalid_request), not ignored: nobody but the
// proxy has a reason to send it, and a proxy missing from TLS_TRUSTED_PROXIES then fails loudly
// instead of every certificate client failing with a puzzling invalid_client.
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Context, Next } from 'koa';
import { isTrusted, trustedList } from '../gateway/config.js';
import { sendError } from '../server/http-errors.js';
import type { PresentedCertificate } from './types.js';
import { certificatesFromText, MalformedCertificate } from '../verifier/certificate.js';
import { x5tS256 } from './x509.js';

/** the most certificates read from a handshake's chain */
const MAX_CERTIFICATES = 8;

export interface ClientCertificateOptions {
  /** lower-case header name; undefined: no proxy header is read (and none is refused) */
  proxyHeader: string | undefined;
  /** addresses / CIDR ranges whose header is believed */
  trustedProxies: readonly string[];
}

type Detailed = { raw?: Buffer; fingerprint256?: string; issuerCertificate?: Detailed };

/** The client certificate of Sigil's own TLS handshake and the chain the client sent, or undefined. */
function fromHandshake(socket: TLSSocket): PresentedCertificate | undefined {
  const peer = socket.getPeerCertificate(true) as Detailed;
  if (!peer?.raw) return undefined;
  const leaf = new X509Certificate(peer.raw);
  const chain: X509Certificate[] = [];
  // Node links each certificate to its issuer from what the client sent; a self-signed root links to itself
  for (let c = peer.issuerCertificate, prev = peer; c?.raw && c !== prev && c.fingerprint256 !== prev.fingerprint256 && chain.length < MAX_CERTIFICATES; prev = c, c = c.issuerCertificate) {
    chain.push(new X509Certificate(c.raw));
  }
  return { certificate: leaf, chain, thumbprint: x5tS256(leaf), via: 'tls' };
}

/** What a request came with: a certificate, none, or why the header was refused. */
export type CertificateSource = { certificate: PresentedCertificate | undefined } | { refused: string };

export function clientCertificateSource(opts: ClientCertificateOptions): (req: IncomingMessage) => CertificateSource {
  const trusted = trustedList(opts.trustedProxies);
  // the handshake's certificate, read once per connection (keep-alive requests share it; TLS 1.3 has no renegotiation)
  const perSocket = new WeakMap<object, PresentedCertificate | null>();
  return function sourceOf(req) {
    const header = opts.proxyHeader === undefined ? undefined : req.headers[opts.proxyHeader];
    if (header !== undefined && header !== '') {
      if (!isTrusted(trusted, req.socket.remoteAddress)) return { refused: `the ${opts.proxyHeader} header is accepted only from a configured proxy (TLS_TRUSTED_PROXIES)` };
      if (typeof header !== 'string') return { refused: `the ${opts.proxyHeader} header must be sent once` };
      try {
        const [leaf, ...chain] = certificatesFromText(header);
        return { certificate: { certificate: leaf!, chain, thumbprint: x5tS256(leaf!), via: 'proxy' } };
      } catch (err) {
        if (!(err instanceof MalformedCertificate)) throw err;
        return { refused: `the client certificate in the ${opts.proxyHeader} header ${err.message}` };
      }
    }
    const socket = req.socket as Partial<TLSSocket>;
    if (!socket.encrypted || typeof socket.getPeerCertificate !== 'function') return { certificate: undefined };
    let known = perSocket.get(socket);
    if (known === undefined) {
      try {
        known = fromHandshake(socket as TLSSocket) ?? null;
      } catch {
        return { refused: 'the client certificate of the TLS handshake cannot be read' };
      }
      perSocket.set(socket, known);
    }
    return { certificate: known ?? undefined };
  };
}

/** Koa middleware: ctx.state.clientCertificate, or 400 invalid_request (RFC 6749 §5.2) for a refused header. */
export function clientCertificate(opts: ClientCertificateOptions) {
  const sourceOf = clientCertificateSource(opts);
  return function presentedCertificate(ctx: Context, next: Next) {
    const source = sourceOf(ctx.req);
    if ('refused' in source) return sendError(ctx, 400, 'invalid_request', source.refused);
    if (source.certificate) ctx.state.clientCertificate = source.certificate;
    return next();
  };
}
