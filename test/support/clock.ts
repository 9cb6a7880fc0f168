// A clock a test moves instead of waiting: hand `now` to the code under test (epoch ms).
export interface TestClock {
  now: () => number;
  /** moves the clock forward by `ms` milliseconds */
  advance(ms: number): number;
  /** sets the clock to `ms` */
  set(ms: number): number;
}

export function testClock(startMs = Date.now()): TestClock {
  let t = startMs;
  return { now: () => t, advance: (ms) => (t += ms), set: (ms) => (t = ms) };
}
