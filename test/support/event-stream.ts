// A status-list event stream (/status-lists/events) held the way a gateway holds it, over node:http so
// that a test can choose the source address (127.0.0.0/8 is all loopback) and see how the stream ended.
import { request } from 'node:http';

export interface HeldStream {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** everything received so far (the body, for a refused stream) */
  text(): string;
  /** the names of the events received so far, with their data */
  events(): { event: string; data: string }[];
  /** 'end': the server ended the body cleanly; 'error': the connection was cut */
  ended: Promise<'end' | 'error'>;
  close(): void;
}

export function holdStream(url: string, opts: { localAddress?: string; path?: string; headers?: Record<string, string> } = {}): Promise<HeldStream> {
  const target = new URL(opts.path ?? '/status-lists/events', url);
  return new Promise((resolve, reject) => {
    const req = request({
      host: target.hostname, port: target.port, path: target.pathname, method: 'GET', agent: false,
      headers: { accept: 'text/event-stream', ...opts.headers }, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    }, (res) => {
      let received = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (received += d));
      const ended = new Promise<'end' | 'error'>((done) => {
        res.once('end', () => done('end'));
        res.once('error', () => done('error'));
        res.once('aborted', () => done('error'));
        res.once('close', () => done(res.complete ? 'end' : 'error'));
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        text: () => received,
        events: () => parseEvents(received),
        ended,
        close: () => req.destroy(),
      });
    });
    req.once('error', reject);
    req.end();
  });
}

function parseEvents(text: string): { event: string; data: string }[] {
  const out: { event: string; data: string }[] = [];
  const blocks = text.replace(/\r\n?/g, '\n').split('\n\n');
  blocks.pop(); // not (yet) complete
  for (const block of blocks) {
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (data.length) out.push({ event, data: data.join('\n') });
  }
  return out;
}
