// The listening sockets: how long a connection may take to send its request, how long an idle one
// is kept, how many there may be. An authorization server's requests are a few KB; a client that
// needs seconds to send one is holding a connection, not making a request.
import { constants } from 'node:crypto';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { HttpLimits } from '../config.js';

/** What Sigil's own TLS listener serves with (TLS_CERT_FILE, TLS_KEY_FILE): PEM. */
export interface TlsCredentials {
  cert: Buffer | string;
  key: Buffer | string;
}

/**
 * TLS as Mozilla's "modern" configuration has it: TLS 1.3 only (its cipher suites are all AEAD with
 * forward secrecy; Node's defaults for them are used). Every machine client Sigil serves runs a TLS
 * stack from this decade; one that cannot do 1.3 should be fronted by a proxy that terminates TLS.
 * A client certificate is asked for but not required (private_key_jwt clients have none) and not
 * judged here: Sigil checks it per client (src/workload/certificate-auth.ts) against the anchors that
 * client's kind allows, never the system store, so no CA list is configured on the listener.
 */
function tlsOptions(tls: TlsCredentials, limits: HttpLimits) {
  return {
    cert: tls.cert,
    key: tls.key,
    minVersion: 'TLSv1.3' as const,
    requestCert: true,
    rejectUnauthorized: false,
    // no session tickets: a resumed session does not carry the client's certificate chain (only the
    // leaf), so a tls_client_auth client with intermediates would fail on its second connection
    secureOptions: constants.SSL_OP_NO_TICKET,
    // the handshake is bounded as the headers are (Node's default is 120 s)
    handshakeTimeout: limits.headersTimeoutMs,
  };
}

/** The listener: plain HTTP, or HTTPS when `tls` is given; the same limits either way. */
export function createHttpServer(handler: RequestListener<typeof IncomingMessage, typeof ServerResponse>, limits: HttpLimits, onDrop?: () => void, tls?: TlsCredentials): Server {
  const httpOptions = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Node checks the two timeouts above only this often (30 s by default): a fifth of the bound
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 5))),
  };
  // node:https's server is node:http's behind a TLS handshake (same timeouts, idle closing, events)
  const server = tls
    ? createHttpsServer({ ...httpOptions, ...tlsOptions(tls, limits) }, handler) as unknown as Server
    : createServer(httpOptions, handler);
  // beyond this Node closes a new connection at once (it emits 'drop')
  server.maxConnections = limits.maxConnections;
  if (onDrop) server.on('drop', onDrop);
  return server;
}

/** Listens; resolves with the port (PORT 0 picks a free one). */
export async function listen(server: Server, port: number, host: string | undefined): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

/** Stops accepting, lets requests in flight finish, and closes idle keep-alive connections at once. */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
