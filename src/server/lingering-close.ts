// Closing a connection while the client is still sending makes the kernel reset it (unread data at
// close), and the client's kernel then drops the answer the client had not read yet: a 413 becomes
// ECONNRESET/EPIPE. As nginx's lingering close: send the answer, half-close, read and discard what
// still arrives for a bounded time and byte count, then close. A slow sender cannot hold it longer.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

export interface LingerBounds {
  /** the longest a connection lingers after its answer, whatever the client does */
  totalMs: number;
  /** closed sooner when nothing arrives for this long (a client that read the answer stops sending) */
  idleMs: number;
  /** closed sooner once this many bytes arrived while lingering */
  maxBytes: number;
}

/** a client that read its answer stops within milliseconds; these only bound the ones that do not */
export const LINGER_BOUNDS: LingerBounds = { totalMs: 5_000, idleMs: 2_000, maxBytes: 8 * 1024 * 1024 };

type LingeringSocket = Socket & { destroySoon?: () => void };

/**
 * For a response sent with `Connection: close` while the request may still be arriving: Node
 * closes such a connection with socket.destroySoon() once the response is written; on this socket
 * only, that becomes a lingering close.
 */
export function lingerAfterResponse(req: IncomingMessage, bounds: LingerBounds = LINGER_BOUNDS): void {
  const socket = req.socket as LingeringSocket;
  if (socket.destroyed) return;
  socket.destroySoon = () => lingeringClose(socket, bounds, req);
}

/**
 * Half-closes `socket` (the answer already written goes out first, then FIN) and discards what the
 * client still sends until it closes its side or a bound is reached; then the socket is destroyed.
 */
export function lingeringClose(socket: Socket, bounds: LingerBounds = LINGER_BOUNDS, req?: IncomingMessage): void {
  if (socket.destroyed) return;
  // the client closed its side already: nothing more will arrive
  if (socket.readableEnded) return void socket.end(() => socket.destroy());
  const startBytes = socket.bytesRead;
  const stop = () => {
    clearTimeout(total);
    clearTimeout(idle);
    socket.destroy();
  };
  const arrived = () => {
    if (socket.bytesRead - startBytes > bounds.maxBytes) return stop();
    idle.refresh();
  };
  const total = setTimeout(stop, bounds.totalMs);
  const idle = setTimeout(stop, bounds.idleMs);
  socket.once('close', () => {
    clearTimeout(total);
    clearTimeout(idle);
  });
  // a 'data' listener takes the bytes from Node's HTTP parser too (which would drop a dumped body unseen)
  socket.on('data', arrived);
  socket.resume();
  // a request body still being read flows into the request: discarded there
  req?.resume();
  // the client's FIN: nothing more will arrive, the answer has been delivered
  socket.once('end', stop);
  socket.end();
}
