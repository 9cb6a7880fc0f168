// A pool of fresh request pairs, built in worker threads (on every core) just before a timed phase,
// so the generator only sends bytes while it is measured.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { pairMaker, type Pair, type PairSpec } from './jwt.js';

export class PairPool {
  #next = 0;
  /** pairs made on the spot because the pool ran dry (the generator may then be the bottleneck) */
  inline = 0;
  readonly #make: () => Pair;
  constructor(readonly pairs: Pair[], spec: PairSpec) {
    this.#make = pairMaker(spec);
  }
  take(): Pair {
    if (this.#next < this.pairs.length) {
      const p = this.pairs[this.#next]!;
      this.pairs[this.#next++] = undefined as unknown as Pair; // let it be collected
      return p;
    }
    this.inline++;
    return this.#make();
  }
  get remaining(): number {
    return this.pairs.length - this.#next;
  }
}

export async function buildPool(spec: PairSpec, count: number, threads = availableParallelism()): Promise<PairPool> {
  const per = Math.ceil(count / threads);
  const parts = await Promise.all(Array.from({ length: threads }, () => new Promise<Pair[]>((resolve, reject) => {
    const w = new Worker(new URL('./pool-worker.js', import.meta.url), { workerData: { spec, count: per } });
    // resolve only once the thread is gone: pinning this process must not race a dying thread
    w.once('message', (pairs: Pair[]) => void w.terminate().then(() => resolve(pairs), reject));
    w.once('error', reject);
  })));
  return new PairPool(parts.flat(), spec);
}
