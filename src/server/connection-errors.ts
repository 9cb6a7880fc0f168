// Requests Node's HTTP layer refuses before Koa sees them. Left to Node, a malformed request gets a
// bare 400 (dropped by a reset when the client is still sending), and CONNECT gets no answer at all:
// Node destroys the socket, together with the answer to any request pipelined before it. Each gets
// the RFC 6749 §5.2 JSON every other refusal gets, after any answer in flight, then a lingering close.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { lingeringClose } from './lingering-close.js';

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 405: 'Method Not Allowed', 408: 'Request Timeout', 413: 'Content Too Large', 431: 'Request Header Fields Too Large',
};

/** Node's parser and timeout error codes, and what the client is told (never anything it sent). */
function refusalOf(code: string | undefined): { status: number; description: string } {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, description: 'the request headers are too large' };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, description: 'the chunk extensions are too large' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, description: 'the request did not arrive in time' };
    default:
      return { status: 400, description: 'the request is not valid HTTP/1.1' };
  }
}

function rawJsonError(status: number, description: string, extra = ''): string {
  const body = JSON.stringify({ error: 'invalid_request', error_description: description });
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\n`
    + `Cache-Control: no-store\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

type HttpSocket = Socket & { _httpMessage?: ServerResponse | null };

/**
 * Answers a request Node refused. A response in flight for an earlier, complete request is sent
 * first; when the refused request is the one in flight (a broken chunked body), the refusal replaces
 * its answer, unless that answer has started already.
 */
function refuse(socket: HttpSocket, answer: string): void {
  const inFlight = socket._httpMessage;
  let sent = false;
  const send = () => {
    if (sent) return;
    sent = true;
    if (!socket.writable) return void socket.destroy();
    socket.write(answer);
    lingeringClose(socket);
  };
  if (!inFlight) return send();
  if (inFlight.req?.complete) {
    inFlight.once('finish', send);
    // never sent (the client went away): nothing to wait for
    inFlight.once('close', () => setImmediate(send));
    return;
  }
  if (!inFlight.headersSent) {
    // the handler still reading this body is released when the socket closes (its request aborts)
    inFlight.detachSocket(socket);
    return send();
  }
  // its own answer is on the way: close after it, as the parser cannot read this connection any further
  inFlight.once('finish', () => socket.writable && lingeringClose(socket));
}

export function answerConnectionErrors(server: Server): void {
  // the parser reports the same error again for every later chunk: the first answer is the answer
  const answered = new WeakSet<Socket>();

  server.on('clientError', (err: NodeJS.ErrnoException, socket: HttpSocket) => {
    if (answered.has(socket)) return;
    answered.add(socket);
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const { status, description } = refusalOf(err.code);
    refuse(socket, rawJsonError(status, description));
  });

  // a listener is what stops Node from destroying the socket unanswered
  server.on('connect', (_req: IncomingMessage, socket: HttpSocket) => {
    if (answered.has(socket)) return;
    answered.add(socket);
    refuse(socket, rawJsonError(405, 'method CONNECT is not allowed'));
  });
}
