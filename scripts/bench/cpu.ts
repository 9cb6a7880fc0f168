// CPU time from /proc: how much of a core a server (all its threads) and the stores behind it used.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let tck: number | undefined;
const ticksPerSecond = () => (tck ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100);

/** utime + stime of a process (all threads) in seconds; NaN when it cannot be read */
export function cpuSeconds(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / ticksPerSecond();
  } catch {
    return NaN;
  }
}

/** CPU seconds used so far by every Redis and Postgres process on this machine */
export function storeCpuSeconds(): number {
  let total = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (comm === 'redis-server' || comm === 'postgres') total += cpuSeconds(Number(pid));
    } catch { /* gone */ }
  }
  return total;
}

/** the 1-minute load average, to warn about a busy machine */
export function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/** busy time (everything but idle and iowait) of one core so far, in seconds */
export function coreBusySeconds(cpu: number): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `));
  if (!line) return NaN;
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) / ticksPerSecond();
}

export interface ThreadCpu {
  /** the JS main thread: user and system (kernel: sockets, syscalls) seconds */
  mainUser: number;
  mainSys: number;
  /** libuv pool threads (where WebCrypto jobs, fs and dns run) */
  pool: number;
  /** V8's threads: GC helpers, compiler */
  v8: number;
}

/** CPU seconds of a process by kind of thread, from /proc/<pid>/task/<tid>/stat */
export function threadCpu(pid: number | undefined): ThreadCpu | undefined {
  if (!pid) return undefined;
  const t: ThreadCpu = { mainUser: 0, mainSys: 0, pool: 0, v8: 0 };
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const user = Number(f[11]) / ticksPerSecond();
        const sys = Number(f[12]) / ticksPerSecond();
        if (Number(tid) === pid) {
          t.mainUser += user;
          t.mainSys += sys;
        } else if (comm === 'libuv-worker') t.pool += user + sys;
        else t.v8 += user + sys;
      } catch { /* thread gone */ }
    }
    return t;
  } catch {
    return undefined;
  }
}

export function threadCpuDelta(a: ThreadCpu | undefined, b: ThreadCpu | undefined): ThreadCpu | undefined {
  if (!a || !b) return undefined;
  return { mainUser: b.mainUser - a.mainUser, mainSys: b.mainSys - a.mainSys, pool: b.pool - a.pool, v8: b.v8 - a.v8 };
}
