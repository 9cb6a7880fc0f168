// The status-list change stream (GET /status-lists/events, Server-Sent Events): one fan-out writes each
// change to every open stream. Bounded in number (per source address and in total), in lifetime, and
// in what a reader that does not read may leave queued in this process.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIPv6 } from 'node:net';
import type { Metrics, StreamEnd, StreamRefusal } from './metrics.js';

const KEEPALIVE_MS = 15_000;
/** a healthy reader keeps next to nothing queued here; past this it is closed */
const BUFFER_LIMIT_BYTES = 64 * 1024;
/** on shutdown, streams get this long to flush their end before their connections are cut */
const SHUTDOWN_GRACE_MS = 1000;
/** reconnect hint, spread so that the gateways of a restarted instance do not all come back at once */
const RETRY_MIN_MS = 1000;
const RETRY_SPREAD_MS = 2000;

const SSE_HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-store',
  'X-Accel-Buffering': 'no',
  // an ended stream also ends its connection: nothing waits for it to go idle
  Connection: 'close',
};

export interface StatusStreamsOptions {
  /** STATUS_STREAMS_MAX */
  max: number;
  /** STATUS_STREAMS_PER_ADDRESS */
  perAddress: number;
  /** STATUS_STREAM_LIFETIME */
  lifetimeSeconds: number;
  /** the ids of the live lists, for the ready event and for a change that may concern any list */
  liveListIds: () => Promise<string[]>;
  uriOf: (listId: string) => string;
  metrics: Metrics;
  keepaliveMs?: number;
  bufferLimitBytes?: number;
}

interface Stream {
  res: ServerResponse;
  source: string;
  lifetime: NodeJS.Timeout;
}

export class StatusStreams {
  private readonly streams = new Set<Stream>();
  private readonly perSource = new Map<string, number>();
  private readonly keepalive: NodeJS.Timeout;
  private readonly bufferLimit: number;
  private closing = false;

  constructor(private readonly opts: StatusStreamsOptions) {
    this.bufferLimit = opts.bufferLimitBytes ?? BUFFER_LIMIT_BYTES;
    this.keepalive = setInterval(() => this.broadcast(': keepalive\n\n'), opts.keepaliveMs ?? KEEPALIVE_MS);
    this.keepalive.unref();
  }

  get size(): number {
    return this.streams.size;
  }

  /**
   * Opens a stream on `res` unless a bound refuses it (then nothing is written and the reason is
   * returned). The ready event, naming every live list, follows once they are read.
   */
  open(req: IncomingMessage, res: ServerResponse): StreamRefusal | undefined {
    const source = sourceOf(req.socket.remoteAddress);
    const refusal = this.closing ? 'shutting_down'
      : this.streams.size >= this.opts.max ? 'capacity'
      : (this.perSource.get(source) ?? 0) >= this.opts.perAddress ? 'per_address'
      : undefined;
    if (refusal) {
      this.opts.metrics.statusStreamsRefused.inc({ reason: refusal });
      return refusal;
    }
    // a stream is a response, not a slow request: no socket timeout applies to it
    req.socket.setTimeout(0);
    const lifetimeMs = this.opts.lifetimeSeconds * 1000 * (0.9 + 0.1 * Math.random());
    const stream: Stream = { res, source, lifetime: setTimeout(() => this.end(stream, 'lifetime'), lifetimeMs) };
    stream.lifetime.unref();
    this.streams.add(stream);
    this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
    this.opts.metrics.statusStreamsOpen.inc();
    res.once('close', () => this.end(stream, 'client'));
    res.writeHead(200, SSE_HEADERS);
    this.write(stream, `retry: ${RETRY_MIN_MS + Math.floor(Math.random() * RETRY_SPREAD_MS)}\n\n`);
    // half-open connections are allowed (http-connections.ts): a reader's FIN means it has gone, and
    // its slot must be free now, not at the next failed keepalive write
    if (req.socket.readableEnded) {
      this.end(stream, 'client');
      return undefined;
    }
    req.socket.once('end', () => this.end(stream, 'client'));
    this.opts.liveListIds().then(
      (ids) => this.write(stream, event('ready', { status_lists: ids.map(this.opts.uriOf) })),
      () => this.end(stream, 'store'),
    );
    return undefined;
  }

  /** Tells every stream which lists changed; undefined: possibly any, so every live list is named. */
  announce(listIds: string[] | undefined): void {
    if (this.streams.size === 0) return;
    if (listIds) return this.announceUris(listIds.map(this.opts.uriOf));
    this.opts.liveListIds().then(
      (ids) => this.announceUris(ids.map(this.opts.uriOf)),
      // a gateway refetches everything it caches when it reconnects: as good as naming every list
      () => {
        for (const s of this.streams) this.end(s, 'store');
      },
    );
  }

  /** Ends every stream (clients reconnect elsewhere) and refuses new ones; resolves once their connections closed. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.keepalive);
    const open = [...this.streams];
    for (const s of open) this.end(s, 'shutdown');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(open.map((s) => closed(s.res))),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS))),
    ]);
    clearTimeout(timer);
    // a reader that never drains would otherwise hold its connection, and the server's close, forever
    for (const s of open) {
      if (s.res.socket && !s.res.socket.destroyed) s.res.socket.resetAndDestroy();
      s.res.destroy();
    }
  }

  private announceUris(uris: string[]): void {
    this.broadcast(event('status_lists_changed', { status_lists: uris, at: Math.floor(Date.now() / 1000) }));
  }

  /** the same bytes to every stream: formatted once, whatever the number of streams */
  private broadcast(chunk: string): void {
    for (const s of this.streams) this.write(s, chunk);
  }

  private write(s: Stream, chunk: string): void {
    if (s.res.writableEnded || s.res.destroyed) return;
    // writableLength counts what the response and its socket hold in this process: at most the
    // limit plus one message, however large a single message (the live lists) may be
    if (s.res.writableLength > this.bufferLimit) return this.end(s, 'slow_reader');
    s.res.write(chunk);
  }

  private end(s: Stream, reason: StreamEnd): void {
    if (!this.streams.delete(s)) return;
    clearTimeout(s.lifetime);
    const left = (this.perSource.get(s.source) ?? 1) - 1;
    if (left > 0) this.perSource.set(s.source, left);
    else this.perSource.delete(s.source);
    this.opts.metrics.statusStreamsOpen.dec();
    this.opts.metrics.statusStreamsEnded.inc({ reason });
    // a slow reader's connection is reset: what it left queued is dropped here and in the kernel
    if (reason === 'slow_reader') {
      s.res.socket?.resetAndDestroy();
      s.res.destroy();
    } else if (!s.res.destroyed) s.res.end();
  }
}

function event(name: string, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

function closed(res: ServerResponse): Promise<void> {
  if (res.destroyed || res.socket === null || res.socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => res.socket!.once('close', () => resolve()));
}

/**
 * The address a per-address bound counts against: the socket's peer, never a header. An IPv4-mapped
 * IPv6 address counts as its IPv4 address; an IPv6 address as its /64, which one host is usually given.
 */
export function sourceOf(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  return `${expandIPv6(address).slice(0, 4).join(':')}::/64`;
}

function expandIPv6(address: string): string[] {
  let a = address.split('%')[0]!.toLowerCase();
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  if (v4) {
    const [w, x, y, z] = v4.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, v4.index)}${((w << 8) | x).toString(16)}:${((y << 8) | z).toString(16)}`;
  }
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => parseInt(g, 16).toString(16));
}
