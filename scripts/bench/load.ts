// The load loop: `concurrency` keep-alive connections, each sending the next pair from the pool as
// soon as its previous response is in, until the deadline. Non-200 answers are counted, by kind.
import http from 'node:http';
import type { PairPool } from './pool.js';

export interface PhaseResult {
  concurrency: number;
  seconds: number;
  ok: number;
  errors: number;
  /** "<status> <error>" → count */
  errorKinds: Record<string, number>;
  tokensPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** pairs made during the phase because the pool ran dry */
  inline: number;
}

const LOOPBACK_HOSTS = /^(localhost|127(\.\d{1,3}){3}|\[::1\]|::1)$/i;

/** The load generator only ever points at the local machine. */
export function assertLoopback(url: string): URL {
  const u = new URL(url);
  if (u.protocol !== 'http:') throw new Error(`refusing ${url}: the load generator speaks plain http to loopback only`);
  if (!LOOPBACK_HOSTS.test(u.hostname)) throw new Error(`refusing ${url}: not a loopback address (127.0.0.0/8, ::1, localhost)`);
  return u;
}

interface Answer {
  status: number;
  body: string;
  ms: number;
}

export class TokenEndpointLoad {
  readonly agent: http.Agent;
  readonly #target: URL;

  constructor(target: string, concurrency: number) {
    this.#target = assertLoopback(target);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency, scheduling: 'fifo' });
  }

  post(body: string, dpop: string): Promise<Answer> {
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const req = http.request(this.#target, {
        method: 'POST',
        agent: this.agent,
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), dpop },
      }, (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        // a 200 is counted by its status alone; an error's body says which error it was
        if (status === 200) res.resume();
        else res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString('utf8'), ms: performance.now() - t0 }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Runs `concurrency` request loops for `seconds`; every response is counted, in-flight ones awaited. */
  async run(pool: PairPool, concurrency: number, seconds: number): Promise<PhaseResult> {
    const latencies: number[] = [];
    const errorKinds: Record<string, number> = {};
    let ok = 0;
    let errors = 0;
    const inlineBefore = pool.inline;
    const start = performance.now();
    const deadline = start + seconds * 1000;
    const loop = async () => {
      while (performance.now() < deadline) {
        const pair = pool.take();
        let kind: string | undefined;
        try {
          const a = await this.post(pair.body, pair.dpop);
          if (a.status === 200) {
            ok++;
            latencies.push(a.ms);
            continue;
          }
          let error = '';
          try {
            error = (JSON.parse(a.body) as { error?: string }).error ?? '';
          } catch { /* not JSON */ }
          kind = `${a.status} ${error}`.trim();
        } catch (err) {
          kind = `network ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
        }
        errors++;
        errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    const elapsed = (performance.now() - start) / 1000;
    latencies.sort((a, b) => a - b);
    const q = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]! : NaN);
    return {
      concurrency,
      seconds: elapsed,
      ok,
      errors,
      errorKinds,
      tokensPerSecond: ok / elapsed,
      p50Ms: q(0.5),
      p99Ms: q(0.99),
      maxMs: latencies.at(-1) ?? NaN,
      inline: pool.inline - inlineBefore,
    };
  }

  close(): void {
    this.agent.destroy();
  }
}
