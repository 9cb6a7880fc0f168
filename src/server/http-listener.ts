// The listening sockets: how long a connection may take to send its request, how long an idle one
// is kept, how many there may be. An authorization server's requests are a few KB; a client that
// needs seconds to send one is holding a connection, not making a request.
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpLimits } from '../config.js';

export function createHttpServer(handler: RequestListener<typeof IncomingMessage, typeof ServerResponse>, limits: HttpLimits, onDrop?: () => void): Server {
  const server = createServer({
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Node checks the two timeouts above only this often (30 s by default): a fifth of the bound
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 5))),
  }, handler);
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
