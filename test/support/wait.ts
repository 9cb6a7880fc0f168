// Waiting in tests, written once: poll a condition (never sleep a fixed time and hope), require an
// observation within a bound, guard a promise against hanging.
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';

export interface PollOptions {
  /** fail after this many milliseconds (default 10 s) */
  timeout?: number;
  /** pause between two polls, in milliseconds (default 25) */
  every?: number;
}

/**
 * Poll `fn` until it returns something other than undefined/false and return that. A throw counts
 * as "not yet" (a server still starting, a key not written yet); the last answer or error is in the
 * failure message.
 */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, opts: PollOptions = {}): Promise<T> {
  const { timeout = 10_000, every = 25 } = opts;
  const deadline = Date.now() + timeout;
  let last = 'nothing yet';
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
      last = String(v);
    } catch (err) {
      last = `error: ${(err as Error).message}`;
    }
    if (Date.now() > deadline) assert.fail(`timed out after ${timeout} ms waiting for ${what}; last: ${last}`);
    await delay(every);
  }
}

/**
 * Poll `check` every 20 ms until it reports the change (true), and require that the request which
 * saw it started within `ms` of `t0` (the moment the changing call returned). Otherwise `check`
 * returns what it saw (a string, or false), which the failure message quotes. Returns the elapsed
 * milliseconds at the start of the observing request.
 */
export async function observedWithin(what: string, t0: number, ms: number, check: () => Promise<boolean | string>): Promise<number> {
  let last: unknown = 'nothing observed yet';
  for (;;) {
    const startedAt = Date.now();
    const r = await check().catch((err: Error) => `error: ${err.message}`);
    if (r === true) {
      const elapsed = startedAt - t0;
      assert.ok(elapsed <= ms, `${what}: observed only after ${elapsed} ms (bound ${ms} ms)`);
      return elapsed;
    }
    last = r;
    if (Date.now() - t0 > ms) assert.fail(`${what}: not observed within ${ms} ms; last seen: ${String(last)}`);
    await delay(20);
  }
}

/** Settle p, or fail after ms: a guard against a hang, not a timing assertion. */
export async function settlesWithin<T>(p: Promise<T>, ms = 10_000, what = 'operation'): Promise<T> {
  const abort = new AbortController();
  const guard = delay(ms, undefined, { signal: abort.signal }).then(
    () => assert.fail(`${what} did not settle within ${ms} ms (hung)`),
    () => undefined as never,
  );
  try {
    return await Promise.race([p, guard]);
  } finally {
    abort.abort();
  }
}
