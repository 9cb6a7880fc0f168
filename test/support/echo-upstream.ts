// The API behind a gateway in the gateway tests: answers every request with what it received (method,
// URL, headers), so a test reads exactly which identity headers the gateway passed on. Also `send`,
// a client of the gateway that can name the Host (fetch cannot), so the public URL is the one a
// client of a real deployment would call.
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Echoed {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface EchoUpstream {
  port: number;
  /** every request that reached the upstream, in order */
  received: Echoed[];
  close(): Promise<void>;
}

export async function startEchoUpstream(): Promise<EchoUpstream> {
  const received: Echoed[] = [];
  const server: Server = createServer((req, res) => {
    const echoed = { method: req.method ?? '', url: req.url ?? '', headers: req.headers };
    received.push(echoed);
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-echo': 'upstream' });
      res.end(JSON.stringify(echoed));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

export interface Sent {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** what the upstream received, when the request reached it (its answer is the echo) */
  echoed?: Echoed;
}

/** One HTTP/1.1 request to 127.0.0.1:port with the Host header given (the public host). */
export function send(port: number, opts: { method?: string; path: string; host: string; headers?: Record<string, string | string[]> }): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path, headers: { host: opts.host, ...opts.headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const echoed = res.headers['x-echo'] === 'upstream' ? (JSON.parse(text) as Echoed) : undefined;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, echoed });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
