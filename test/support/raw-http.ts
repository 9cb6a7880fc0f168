// HTTP/1.1 over a raw socket, for what fetch will not send (bad methods, absolute-form targets,
// broken framing, pipelining) and to tell apart how a request ended: answered, connection closed
// without an answer, reset, or no answer before a deadline.
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  /** header names in lower case; repeated headers joined with ", " */
  headers: Record<string, string>;
  body: Buffer;
  text: string;
  /** the body parsed as JSON, when it is JSON */
  json: any;
}

export type RawEnd =
  /** every expected response arrived */
  | 'answered'
  /** the server closed the connection (FIN) before every expected response arrived */
  | 'closed'
  /** the connection was reset (ECONNRESET, EPIPE) before every expected response arrived */
  | 'reset'
  /** no complete answer before the deadline */
  | 'timeout';

export interface RawExchange {
  responses: RawResponse[];
  end: RawEnd;
  /** the socket error code, if any */
  error?: string;
  /** bytes of the request(s) written before the exchange ended */
  written: number;
}

export interface RawOptions {
  /** how many responses the request bytes should get (pipelining: several) */
  expect?: number;
  /** the longest the whole exchange may take */
  deadlineMs?: number;
  /** half-close (FIN) after the last chunk is written */
  halfClose?: boolean;
  /** stop writing as soon as a response starts (a client that reads early answers, e.g. a 413) */
  stopOnResponse?: boolean;
  /** the requests were HEAD: their responses have no body */
  head?: boolean[];
  /** keep writing (and reading) until the server closes the connection, whatever it answered */
  untilClosed?: boolean;
  /** write chunk i only once i responses have arrived (requests one after another on a keep-alive connection) */
  sequential?: boolean;
  /** wait this long between chunks (a slow sender) */
  chunkDelayMs?: number;
  host?: string;
}

/** Response parser: as much of the buffer as forms complete responses. */
function parseResponses(buf: Buffer, head: boolean[], eof: boolean): { responses: RawResponse[]; rest: Buffer; closeAfter: boolean } {
  const responses: RawResponse[] = [];
  let closeAfter = false;
  let rest = buf;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i <= 0) continue;
      const name = line.slice(0, i).trim().toLowerCase();
      const value = line.slice(i + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    let after = rest.subarray(end + 4);
    if (status >= 100 && status < 200) {
      rest = after;
      continue;
    }
    const isHead = head[responses.length] ?? false;
    let body: Buffer;
    if (isHead || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (/^text\/event-stream/i.test(headers['content-type'] ?? '')) {
      // an event stream never ends (chunked or not): its headers are the answer
      body = Buffer.alloc(0);
      after = Buffer.alloc(0);
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const parts: Buffer[] = [];
      let complete = false;
      for (;;) {
        const nl = after.indexOf('\r\n');
        if (nl < 0) break;
        const size = parseInt(after.subarray(0, nl).toString('latin1'), 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const trailerEnd = after.indexOf('\r\n\r\n', nl - 2 < 0 ? 0 : nl - 2);
          if (trailerEnd < 0) break;
          after = after.subarray(trailerEnd + 4);
          complete = true;
          break;
        }
        if (after.length < nl + 2 + size + 2) break;
        parts.push(after.subarray(nl + 2, nl + 2 + size));
        after = after.subarray(nl + 2 + size + 2);
      }
      if (!complete) break;
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length']);
      if (after.length < length) break;
      body = after.subarray(0, length);
      after = after.subarray(length);
    } else {
      // delimited by the end of the connection
      if (!eof) break;
      body = after;
      after = Buffer.alloc(0);
    }
    const text = body.toString('utf8');
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    responses.push({ status, headers, body, text, json });
    rest = after;
    if (/\bclose\b/i.test(headers.connection ?? '')) {
      closeAfter = true;
      break;
    }
  }
  return { responses, rest, closeAfter };
}

/**
 * Writes `chunks` to a fresh connection and collects the responses. Never throws for what the
 * server does: the outcome says how the exchange ended.
 */
export function rawExchange(port: number, chunks: Iterable<Buffer | string>, opts: RawOptions = {}): Promise<RawExchange> {
  const expect = opts.expect ?? 1;
  const head = opts.head ?? [];
  return new Promise((resolve) => {
    // a client that goes on sending after the server's FIN (a careless or hostile one) ignores it
    const socket: Socket = connect({ port, host: opts.host ?? '127.0.0.1', allowHalfOpen: true });
    socket.setNoDelay(true);
    const received: Buffer[] = [];
    let responses: RawResponse[] = [];
    let error: string | undefined;
    let written = 0;
    let finished = false;
    let closeAfter = false;
    /** wakes the writer waiting for a response (sequential) */
    let answered: () => void = () => {};
    const finish = (end: RawEnd) => {
      if (finished) return;
      finished = true;
      answered();
      clearTimeout(deadline);
      socket.destroy();
      resolve({ responses, end, error, written });
    };
    const deadline = setTimeout(() => finish('timeout'), opts.deadlineMs ?? 10_000);
    const parse = (eof: boolean) => {
      const parsed = parseResponses(Buffer.concat(received), head, eof);
      responses = parsed.responses;
      closeAfter = parsed.closeAfter;
      answered();
      if ((responses.length >= expect || closeAfter) && !opts.untilClosed) finish('answered');
    };
    socket.on('data', (d: Buffer) => {
      received.push(d);
      parse(false);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on('end', () => {
      parse(true);
      // the server will send nothing more; only a client that goes on writing waits for the close
      if (!opts.untilClosed) finish(responses.length >= expect ? 'answered' : 'closed');
    });
    socket.on('close', () => {
      if (finished) return;
      parse(true);
      if (opts.untilClosed && responses.length) return finish('answered');
      finish(error && /RESET|EPIPE/.test(error) ? 'reset' : 'closed');
    });
    socket.once('connect', async () => {
      let index = 0;
      for (const chunk of chunks) {
        if (opts.sequential) {
          while (responses.length < index && !finished) await new Promise<void>((r) => (answered = r));
        }
        index++;
        if (finished || socket.destroyed || socket.writableEnded || (opts.stopOnResponse && received.length)) return;
        if (opts.chunkDelayMs) await new Promise((r) => setTimeout(r, opts.chunkDelayMs));
        const ok = socket.write(chunk);
        written += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
        if (!ok) await new Promise<void>((r) => { socket.once('drain', r); socket.once('close', r); });
      }
      if (opts.halfClose && !socket.destroyed) socket.end();
    });
  });
}

/** One request's bytes: request line, headers (Host first unless given), blank line, body. */
export function rawRequestBytes(method: string, target: string, headers: Array<[string, string]>, body?: Buffer | string): Buffer {
  const lines = [`${method} ${target} HTTP/1.1`];
  if (!headers.some(([n]) => n.toLowerCase() === 'host')) lines.push('Host: 127.0.0.1');
  for (const [n, v] of headers) lines.push(`${n}: ${v}`);
  const bodyBytes = body === undefined ? Buffer.alloc(0) : typeof body === 'string' ? Buffer.from(body) : body;
  if (body !== undefined && !headers.some(([n]) => /^(content-length|transfer-encoding)$/i.test(n))) lines.push(`Content-Length: ${bodyBytes.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), bodyBytes]);
}
