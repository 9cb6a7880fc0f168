// Background jobs of one server: housekeeping that forgets what can no longer matter. Each task runs
// on its own; one that fails waits for the next round.
export interface Housekeeping {
  close(): void;
}

export function startHousekeeping(tasks: ReadonlyArray<() => Promise<unknown>>, everyMs = 60_000): Housekeeping {
  const timer = setInterval(() => {
    for (const task of tasks) void task().catch(() => {});
  }, everyMs);
  timer.unref();
  return { close: () => clearInterval(timer) };
}
