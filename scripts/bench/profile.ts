// Reads a V8 .cpuprofile and sums self time per function (name + script), optionally only over a
// time window (CLOCK_MONOTONIC microseconds, the clock of both V8's profile and process.hrtime).
import { readFile } from 'node:fs/promises';

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  where: string;
  selfMs: number;
  percent: number;
  note?: string;
  module?: string;
}

/** what a few opaque frames stand for */
function noteFor(name: string, url: string): string | undefined {
  if (url === 'node:internal/crypto/util' && name === '(anonymous)') return 'WebCrypto job (jobPromise): the ES256 sign/verify itself';
  if (url === 'node:internal/crypto/ec' && name === 'ecImportKey') return 'importing a JWK into a CryptoKey';
  if (name === '(idle)') return 'waiting: I/O (Redis, Postgres, sockets) or the libuv pool';
  if (name === '(program)') return 'V8/native work outside JS';
  return undefined;
}

export interface ProfileSummary {
  windowed: boolean;
  totalMs: number;
  idleMs: number;
  top: ProfileEntry[];
  /** self time by package (node_modules/<pkg>), Sigil's own code, node internals, GC... */
  byModule: ProfileEntry[];
  /** every function, for comparing two profiles */
  all: ProfileEntry[];
  /**
   * main-thread time spent with a frame of these libraries on the stack (the synchronous part of
   * what they do, socket writes and parsing included), ms
   */
  inclusive: Record<string, number>;
}

/** libraries whose whole cost (inclusive) is worth knowing on the token path */
export const INCLUSIVE_MODULES = ['ioredis', 'pg', 'pg-protocol', 'prom-client', 'pino'];

function moduleOf(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return 'node internals';
  if (url.includes('/dist/src/')) return 'sigil (dist/src)';
  return url;
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  const d = url.indexOf('/dist/');
  if (d >= 0) return url.slice(d + 1);
  return url.replace(/^file:\/\//, '');
}

export async function summarize(file: string, topN = 15, window?: { fromUs: number; toUs: number }): Promise<ProfileSummary> {
  const p = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // per node: the INCLUSIVE_MODULES with a frame on its stack
  const stackMods = new Map<number, string[]>();
  const modsOf = (id: number): string[] => {
    let m = stackMods.get(id);
    if (m) return m;
    const up = parent.get(id);
    const url = byId.get(id)?.url ?? '';
    const own = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];
    m = up === undefined ? [] : modsOf(up);
    if (own && INCLUSIVE_MODULES.includes(own) && !m.includes(own)) m = [...m, own];
    stackMods.set(id, m);
    return m;
  };
  const inclusive: Record<string, number> = Object.fromEntries(INCLUSIVE_MODULES.map((m) => [m, 0]));
  const windowed = !!window && window.fromUs >= p.startTime && window.toUs <= p.endTime;
  const self = new Map<string, { name: string; where: string; mod: string; note?: string; us: number }>();
  let t = p.startTime;
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    // a sample stands for the time until the next one
    const dur = (p.timeDeltas[i + 1] ?? 0);
    if (windowed && (t < window!.fromUs || t > window!.toUs)) continue;
    const cf = byId.get(p.samples[i]!)!;
    total += dur;
    if (cf.functionName === '(idle)') idle += dur;
    for (const m of modsOf(p.samples[i]!)) inclusive[m]! += dur / 1000;
    const key = `${cf.functionName}\u0000${cf.url}`;
    const name = cf.functionName || '(anonymous)';
    const e = self.get(key) ?? { name, where: cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : '', mod: moduleOf(cf.url, cf.functionName), note: noteFor(name, cf.url), us: 0 };
    e.us += dur;
    self.set(key, e);
  }
  const mods = new Map<string, number>();
  for (const e of self.values()) mods.set(e.mod, (mods.get(e.mod) ?? 0) + e.us);
  const pct = (us: number) => (100 * us) / total;
  return {
    windowed,
    totalMs: total / 1000,
    idleMs: idle / 1000,
    top: [...self.values()].sort((a, b) => b.us - a.us).slice(0, topN).map((e) => ({ name: e.name, where: e.where, selfMs: e.us / 1000, percent: pct(e.us), note: e.note })),
    inclusive,
    all: [...self.values()].map((e) => ({ name: e.name, where: e.where, selfMs: e.us / 1000, percent: pct(e.us), note: e.note, module: e.mod })),
    byModule: [...mods.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([m, us]) => ({ name: m, where: '', selfMs: us / 1000, percent: pct(us) })),
  };
}

/**
 * What one profile spends per token beyond another: self ms per token, function by function
 * (idle excluded), largest extra cost first.
 */
export function extraPerToken(a: ProfileSummary, aTokens: number, b: ProfileSummary, bTokens: number, topN = 10): Array<ProfileEntry & { extraMsPerToken: number }> {
  const key = (e: ProfileEntry) => `${e.name}\u0000${e.where}`;
  const base = new Map(b.all.map((e) => [key(e), e.selfMs / bTokens]));
  return a.all
    .filter((e) => e.name !== '(idle)')
    .map((e) => ({ ...e, extraMsPerToken: e.selfMs / aTokens - (base.get(key(e)) ?? 0) }))
    .sort((x, y) => y.extraMsPerToken - x.extraMsPerToken)
    .slice(0, topN);
}

/** Extra self time per token by module (node internals, each package, Sigil's code, GC...), µs. */
export function extraPerTokenByModule(a: ProfileSummary, aTokens: number, b: ProfileSummary, bTokens: number): Array<{ name: string; extraUs: number }> {
  const perToken = (s: ProfileSummary, n: number) => {
    const m = new Map<string, number>();
    for (const e of s.all) if (e.name !== '(idle)') m.set(e.module ?? '', (m.get(e.module ?? '') ?? 0) + (1000 * e.selfMs) / n);
    return m;
  };
  const am = perToken(a, aTokens);
  const bm = perToken(b, bTokens);
  return [...new Set([...am.keys(), ...bm.keys()])]
    .map((name) => ({ name, extraUs: (am.get(name) ?? 0) - (bm.get(name) ?? 0) }))
    .sort((x, y) => y.extraUs - x.extraUs);
}
