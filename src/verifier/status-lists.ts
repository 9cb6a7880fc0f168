// Revocation offline (draft-ietf-oauth-status-list): a token names a list and an index; the list is a
// JWT signed by the issuer carrying a zlib-compressed bitstring. Each list is cached for its `ttl`,
// and the issuer's change stream (GET /status-lists/events, Server-Sent Events) makes a changed list
// be fetched again at once: a request arriving meanwhile waits for the new copy, never uses the old.
// After the stream reconnects, every cached list is fetched again (changes may have been missed).
import { inflateSync } from 'node:zlib';
import type { FetchLike, IssuerState } from './issuer.js';
import { ALGORITHMS, hasType, isObject, parseJws } from './jws.js';

export type StatusAnswer = { status: number } | { unavailable: string };

interface CachedList {
  bits: 1 | 2 | 4 | 8;
  bytes: Uint8Array;
  /** epoch ms after which the copy must be fetched again */
  until: number;
}

interface Entry {
  list?: CachedList;
  /** a fetch in progress: requests wait for it */
  loading?: Promise<CachedList>;
  /** the stream said the list changed after `loading` started */
  changedAgain?: boolean;
  lastUsed: number;
}

/** a status list token is a few hundred bytes while mostly zero; a huge one is an attack */
const MAX_TOKEN_LENGTH = 1 << 20;
/** 2^24 one-bit statuses */
const MAX_INFLATED_BYTES = 1 << 21;
const DEFAULT_TTL_SECONDS = 300;
/** lists not asked for in this long are dropped (their tokens expired) */
const IDLE_MS = 3_600_000;
/** a stream open this long before it ended was healthy: the next one is opened at once */
const HEALTHY_STREAM_MS = 10_000;
const QUICK_RECONNECT_MS = 250;

export interface StatusListsOptions {
  issuer: IssuerState;
  fetch: FetchLike;
  now: () => number;
  /** keep the change stream open (default true) */
  events: boolean;
  /** first reconnect delay and the cap of its doubling */
  backoffMs?: { min: number; max: number };
  log?: (event: string, detail?: Record<string, unknown>) => void;
}

export class StatusLists {
  readonly #opts: StatusListsOptions;
  readonly #lists = new Map<string, Entry>();
  #stream: AbortController | undefined;
  #reconnect: NodeJS.Timeout | undefined;
  #failures = 0;
  #retryHintMs: number | undefined;
  #readyAt = 0;
  #closed = false;
  /** the change stream is open and its ready event arrived */
  streamReady = false;
  /** counters for tests and metrics */
  readonly counts = { fetches: 0, streamConnects: 0 };

  constructor(opts: StatusListsOptions) {
    this.#opts = opts;
  }

  /** The status at `idx` of the list at `uri` (0 = valid), or why it cannot be had. */
  async status(uri: string, idx: number): Promise<StatusAnswer> {
    if (!this.#stream && this.#opts.events && !this.#closed) this.#connect();
    let entry = this.#lists.get(uri);
    if (!entry) {
      entry = { lastUsed: 0 };
      this.#lists.set(uri, entry);
    }
    const now = this.#opts.now();
    entry.lastUsed = now;
    let list = entry.list;
    if (!list || entry.loading || now >= list.until) {
      try {
        list = await this.#load(uri, entry);
      } catch (err) {
        return { unavailable: (err as Error).message };
      }
    }
    const position = idx * list.bits;
    if (position >= list.bytes.length * 8) return { unavailable: `index ${idx} is outside the list` };
    return { status: (list.bytes[position >> 3]! >> (position & 7)) & ((1 << list.bits) - 1) };
  }

  #load(uri: string, entry: Entry): Promise<CachedList> {
    entry.loading ??= this.#fetchList(uri).then(
      (list) => {
        entry.loading = undefined;
        entry.list = list;
        // a change announced while this fetch was on its way may not be in it
        if (entry.changedAgain) {
          entry.changedAgain = false;
          void this.#load(uri, entry).catch(() => {});
        }
        return list;
      },
      (err: unknown) => {
        entry.loading = undefined;
        entry.changedAgain = false;
        // fail closed: an outdated copy is not used past its time
        throw err;
      },
    );
    return entry.loading;
  }

  /** The list is stale now: fetched again at once, and requests wait for the new copy. */
  invalidate(uri: string): void {
    const entry = this.#lists.get(uri);
    if (!entry) return;
    if (entry.loading) entry.changedAgain = true;
    else void this.#load(uri, entry).catch(() => {});
  }

  invalidateAll(): void {
    for (const uri of this.#lists.keys()) this.invalidate(uri);
  }

  async #fetchList(uri: string): Promise<CachedList> {
    this.counts.fetches++;
    const res = await this.#opts.fetch(uri, { headers: { accept: 'application/statuslist+jwt' } });
    const text = (await res.text()).trim();
    if (res.status !== 200) throw new Error(`status list ${uri} answered ${res.status}`);
    const jws = parseJws(text, MAX_TOKEN_LENGTH);
    if (!jws) throw new Error('status list token is not a compact JWS');
    const { header, payload } = jws;
    if (!hasType(header, 'statuslist+jwt')) throw new Error('status list token typ is not statuslist+jwt');
    const alg = typeof header.alg === 'string' ? header.alg : '';
    const spec = ALGORITHMS[alg];
    if (!spec) throw new Error(`status list token alg ${alg} is not allowed`);
    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    const candidates = (await this.#opts.issuer.keysFor(kid)).filter((k) => k.kty === spec.kty && (k.alg === undefined || k.alg === alg));
    const signed = Buffer.from(jws.signingInput, 'ascii');
    if (!candidates.some((k) => spec.verify(signed, k.key, jws.signature))) throw new Error('status list token signature is invalid');
    if (payload.sub !== uri) throw new Error('status list token sub is not its uri');
    if (payload.iss !== undefined && payload.iss !== this.#opts.issuer.issuer) throw new Error('status list token iss is not the issuer');
    const now = this.#opts.now();
    const nowS = Math.floor(now / 1000);
    if (typeof payload.iat !== 'number') throw new Error('status list token has no iat');
    if (payload.exp !== undefined && (typeof payload.exp !== 'number' || payload.exp <= nowS)) throw new Error('status list token has expired');
    const ttl = payload.ttl;
    if (ttl !== undefined && !(typeof ttl === 'number' && Number.isInteger(ttl) && ttl > 0)) throw new Error('status list token ttl is not a positive integer');
    const sl = payload.status_list;
    if (!isObject(sl)) throw new Error('status list token has no status_list');
    const { bits, lst } = sl;
    if (bits !== 1 && bits !== 2 && bits !== 4 && bits !== 8) throw new Error('status_list.bits must be 1, 2, 4 or 8');
    if (typeof lst !== 'string' || !/^[A-Za-z0-9_-]+$/.test(lst)) throw new Error('status_list.lst is not base64url');
    let bytes: Uint8Array;
    try {
      // ZLIB (RFC 1950), as the draft mandates; bounded so a small bomb cannot take the memory
      bytes = new Uint8Array(inflateSync(Buffer.from(lst, 'base64url'), { maxOutputLength: MAX_INFLATED_BYTES }));
    } catch {
      throw new Error('status_list.lst does not inflate');
    }
    let lifetimeS = typeof ttl === 'number' ? ttl : DEFAULT_TTL_SECONDS;
    if (typeof payload.exp === 'number') lifetimeS = Math.min(lifetimeS, payload.exp - nowS);
    this.#sweep(now);
    return { bits, bytes, until: now + lifetimeS * 1000 };
  }

  #sweep(now: number): void {
    for (const [uri, e] of this.#lists) if (!e.loading && now - e.lastUsed > IDLE_MS) this.#lists.delete(uri);
  }

  // ---- the change stream ----

  async #eventsUrl(): Promise<string> {
    const md = await this.#opts.issuer.metadata();
    const base = typeof md.status_list_aggregation_endpoint === 'string' ? md.status_list_aggregation_endpoint : `${this.#opts.issuer.issuer}/status-lists`;
    return `${base.replace(/\/$/, '')}/events`;
  }

  #connect(): void {
    const controller = new AbortController();
    this.#stream = controller;
    void this.#run(controller).then(
      () => this.#scheduleReconnect(controller),
      () => this.#scheduleReconnect(controller),
    );
  }

  async #run(controller: AbortController): Promise<void> {
    const url = await this.#eventsUrl();
    const res = await this.#opts.fetch(url, { headers: { accept: 'text/event-stream' }, signal: controller.signal });
    if (res.status !== 200 || !res.body) {
      await res.body?.cancel().catch(() => {});
      throw new Error(`status list events answered ${res.status}`);
    }
    this.counts.streamConnects++;
    const decoder = new TextDecoder();
    let buffer = '';
    let event = 'message';
    let data: string[] = [];
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (data.length) this.#dispatch(event, data.join('\n'));
          event = 'message';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
        else if (field === 'retry' && /^\d+$/.test(value)) this.#retryHintMs = Number(value);
      }
    }
  }

  #dispatch(event: string, data: string): void {
    let uris: unknown;
    try {
      uris = (JSON.parse(data) as { status_lists?: unknown }).status_lists;
    } catch {
      return;
    }
    if (event === 'ready') {
      // (re)connected: whatever changed while no stream was open is refetched now
      this.#failures = 0;
      this.streamReady = true;
      this.#readyAt = this.#opts.now();
      this.#opts.log?.('status_stream_ready');
      this.invalidateAll();
    } else if (event === 'status_lists_changed' && Array.isArray(uris)) {
      for (const uri of uris) if (typeof uri === 'string') this.invalidate(uri);
    }
  }

  #scheduleReconnect(controller: AbortController): void {
    if (this.#stream !== controller) return;
    // a stream that served a while and ended (the issuer ends each after its lifetime, spread
    // already) is replaced at once: changes in the gap would wait for the reconnection
    const healthy = this.streamReady && this.#opts.now() - this.#readyAt > HEALTHY_STREAM_MS;
    this.streamReady = false;
    this.#stream = undefined;
    if (this.#closed) return;
    const { min, max } = this.#opts.backoffMs ?? { min: this.#retryHintMs ?? 1000, max: 30_000 };
    const base = healthy ? QUICK_RECONNECT_MS : Math.min(max, min * 2 ** Math.min(this.#failures, 16));
    if (!healthy) this.#failures++;
    // spread, so that the gateways of a restarted issuer do not all come back at once
    const delay = base / 2 + Math.random() * (base / 2);
    this.#opts.log?.('status_stream_reconnect', { delay_ms: Math.round(delay) });
    this.#reconnect = setTimeout(() => {
      this.#reconnect = undefined;
      if (!this.#closed) this.#connect();
    }, delay);
    this.#reconnect.unref();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#reconnect);
    this.#stream?.abort();
    this.#stream = undefined;
    this.streamReady = false;
  }
}
