// Knows whether the stores a safe answer depends on are reachable, by pinging them every interval.
// While either is down, the token and admin paths answer 503 instead of guessing (fail closed). So
// do they for a few seconds after Redis lost its replay records (see storage/replay-generations.ts).
import type { Logger } from '../log.js';

export interface Probe {
  name: string;
  ping(): Promise<void>;
  /** known without a round trip, between pings: whether the probe's part is fit to serve now */
  healthy?(): boolean;
}

export class Readiness {
  readonly #probes: Probe[];
  readonly #log: Logger;
  readonly #status = new Map<string, boolean>();
  readonly #timer: NodeJS.Timeout;

  constructor(probes: Probe[], log: Logger, intervalMs = 500) {
    this.#probes = probes;
    this.#log = log;
    for (const p of probes) this.#status.set(p.name, true);
    this.#timer = setInterval(() => void this.check(), intervalMs);
    this.#timer.unref();
  }

  async check(): Promise<void> {
    await Promise.all(
      this.#probes.map(async (p) => {
        let ok = true;
        try {
          await Promise.race([p.ping(), new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000).unref())]);
        } catch {
          ok = false;
        }
        if (this.#status.get(p.name) !== ok) this.#log[ok ? 'info' : 'error']({ store: p.name, ready: ok }, ok ? 'store reachable' : 'store unreachable');
        this.#status.set(p.name, ok);
      }),
    );
  }

  get ready(): boolean {
    for (const ok of this.#status.values()) if (!ok) return false;
    for (const p of this.#probes) if (p.healthy && !p.healthy()) return false;
    return true;
  }

  report(): Record<string, 'up' | 'down'> {
    return Object.fromEntries(this.#probes.map((p) => [p.name, this.#status.get(p.name) && (!p.healthy || p.healthy()) ? 'up' : 'down']));
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
