// Every request on a connection gets an answer, also those Node's HTTP layer handles before Koa.
// Left to Node: a client that half-closes after sending its request gets nothing (the socket is ended
// before the answer is ready); CONNECT gets nothing (the socket is destroyed, with the answers to
// requests pipelined before it); a malformed request, an unknown Expect or a missing Host get a bare
// 400/417 (and a reset, when the client is still sending). Here each gets the RFC 6749 §5.2 JSON
// every other refusal gets, after any answer in flight, then a lingering close.
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { lingerAfterResponse, lingeringClose } from './lingering-close.js';

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

/** A whole response, written to the socket itself: Node has no response object for these requests. */
function rawJsonError(status: number, description: string): string {
  const body = JSON.stringify({ error: 'invalid_request', error_description: description });
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n`
    + `Cache-Control: no-store\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

type HttpSocket = Socket & { _httpMessage?: ServerResponse | null };

/**
 * Answers a request Node refused. A response in flight for an earlier, complete request is sent
 * first; when the refused request is the one in flight (a broken chunked body), the refusal replaces
 * its answer, unless that answer has started already.
 */
function refuse(socket: HttpSocket, answer: string): void {
  let sent = false;
  const send = () => {
    if (sent) return;
    sent = true;
    if (!socket.writable) return void socket.destroy();
    socket.write(answer);
    lingeringClose(socket);
  };
  let waitingFor: ServerResponse | undefined;
  const afterAnswersInFlight = () => {
    const inFlight = socket._httpMessage;
    if (!inFlight) return send();
    if (inFlight === waitingFor) return;
    if (inFlight.req?.complete) {
      // Node hands the socket to the next pipelined response when one finishes (before this listener
      // runs): every complete request before the refused one is answered first, in order
      waitingFor = inFlight;
      inFlight.once('finish', afterAnswersInFlight);
      // never sent (the client went away): nothing to wait for
      inFlight.once('close', () => setImmediate(afterAnswersInFlight));
      return;
    }
    if (!inFlight.headersSent) {
      // the handler still reading this body is released when the socket closes (its request aborts)
      inFlight.detachSocket(socket);
      return send();
    }
    // its own answer is on the way: close after it, as the parser cannot read this connection any further
    inFlight.once('finish', () => socket.writable && lingeringClose(socket));
  };
  afterAnswersInFlight();
}

type HttpServer = Server & { httpAllowHalfOpen?: boolean; requireHostHeader?: boolean };

export function answerEveryRequest(server: Server): void {
  const http = server as HttpServer;
  // a client's FIN ends its requests, not the answers it is owed (Node: the answer in flight is sent, then the socket ends)
  http.httpAllowHalfOpen = true;
  // answered by Koa in JSON instead (requestContext in middleware.ts)
  http.requireHostHeader = false;

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

  // only 100-continue is understood (Node answers it); anything else is 417 (RFC 9110 §10.1.1)
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify({ error: 'invalid_request', error_description: 'only Expect: 100-continue is supported' });
    res.writeHead(417, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'close', 'Content-Length': Buffer.byteLength(body) });
    lingerAfterResponse(req);
    res.end(body);
  });
}
