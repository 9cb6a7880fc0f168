// Token-endpoint load generator: client_credentials + private_key_jwt + DPoP, a fresh client assertion
// and a fresh DPoP proof on every request (built before the timed phase), keep-alive connections,
// fixed concurrency and duration, loopback targets only.
//
//   npm run bench -- --side-by-side [--duration 10] [--concurrency 1,8,32] [--repeat 5] [--profile [--profile-concurrency 8]] [--json out.json]
//       oidc-provider baseline vs Sigil (real Postgres + Redis), each pinned to core 0, generator on core 1
//   npm run bench -- --url http://127.0.0.1:3000 --client-id ID --key-file F [--concurrency 8] [--duration 10]
//       [--dpop-key-file F] [--scope S] [--resource URI] [--aud ISSUER]: any running server on this machine
//
// Also: --warmup 2 (s, before each phase), --server-cpu 0, --generator-cpu 1, --no-pin, --ceiling-seconds 3.
// Every run measures the crypto-only ceiling on one core: 2 ES256 verifies + 1 ES256 sign per token.
// Exit status: 0 clean, 1 some responses were not 200, 2 the run could not be made.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { JWK } from 'jose';
import { generateClientKey } from '../src/client/oauth-client.js';
import type { PairSpec } from './bench/jwt.js';
import { assertLoopback, TokenEndpointLoad, type PhaseResult } from './bench/load.js';
import { coreBusySeconds, cpuSeconds, loadAverage, storeCpuSeconds, threadCpu, threadCpuDelta, type ThreadCpu } from './bench/cpu.js';
import { buildPool } from './bench/pool.js';
import { extraPerToken, extraPerTokenByModule, summarize, type ProfileSummary } from './bench/profile.js';
import {
  createSigilStorage, NODE, prepareBaseline, startBaseline, startSigil, type Child, type SigilStorage,
} from './bench/servers.js';
import { createBenchClient } from './bench/sigil-admin.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** proofs are refused once older than 60 s (Sigil), so a phase and its pool must fit well inside that */
const MAX_PHASE_SECONDS = 40;
const RESOURCE = 'urn:bench:api';

const log = (msg: string) => process.stderr.write(`${msg}\n`);
function fail(msg: string): never {
  log(`bench-token: ${msg}`);
  process.exit(2);
}

function parseOptions() {
  try {
    return parseArgs({
      options: {
        'side-by-side': { type: 'boolean', default: false },
        url: { type: 'string' },
        'client-id': { type: 'string' },
        'key-file': { type: 'string' },
        'dpop-key-file': { type: 'string' },
        aud: { type: 'string' },
        scope: { type: 'string' },
        resource: { type: 'string' },
        concurrency: { type: 'string' },
        duration: { type: 'string', default: '10' },
        warmup: { type: 'string', default: '2' },
        profile: { type: 'boolean', default: false },
        'profile-concurrency': { type: 'string', default: '8' },
        'server-cpu': { type: 'string', default: '0' },
        'generator-cpu': { type: 'string' },
        'no-pin': { type: 'boolean', default: false },
        'ceiling-seconds': { type: 'string', default: '3' },
        repeat: { type: 'string', default: '1' },
        json: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (err) {
    return fail(`${(err as Error).message} (see --help)`);
  }
}
const opt = parseOptions();

if (opt.help) {
  const header = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
  process.stdout.write(`${header.slice(0, header.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n')}\n`);
  process.exit(0);
}
if (Number(process.versions.node.split('.')[0]) < 22) fail(`Node ${process.version}: run with Node 22 (npm run bench, or node_modules/.bin/node)`);

const duration = Number(opt.duration);
const warmup = Number(opt.warmup);
if (!(duration > 0 && duration + warmup <= MAX_PHASE_SECONDS)) fail(`--duration + --warmup must be at most ${MAX_PHASE_SECONDS} s (proofs go stale after 60 s)`);
const concurrencies = (opt.concurrency ?? (opt['side-by-side'] ? '1,8,32' : '8')).split(',').map(Number);
if (concurrencies.some((c) => !Number.isInteger(c) || c < 1 || c > 1024)) fail('--concurrency: whole numbers 1..1024, comma-separated');
const profileConcurrency = Number(opt['profile-concurrency']);
if (!Number.isInteger(profileConcurrency) || profileConcurrency < 1 || profileConcurrency > 1024) fail('--profile-concurrency: a whole number 1..1024');

// ---- CPU pinning -------------------------------------------------------------------------------

const canPin = !opt['no-pin'] && spawnSync('taskset', ['-V']).status === 0 && availableParallelism() >= 2;
const serverCpu = canPin ? opt['server-cpu'] : undefined;
/** the one core the servers run on, when it is one core */
const serverCore = serverCpu !== undefined && /^\d+$/.test(serverCpu) ? Number(serverCpu) : undefined;
const generatorCpu = canPin ? (opt['generator-cpu'] ?? (opt['side-by-side'] ? '1' : undefined)) : undefined;
const ownCpus = canPin ? /:\s*(\S+)\s*$/.exec(execFileSync('taskset', ['-c', '-p', String(process.pid)], { encoding: 'utf8' }))?.[1] : undefined;

/** every thread of this process (libuv pool included) onto `cpus` */
function pinSelf(list: string | undefined): void {
  if (!list) return;
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync('taskset', ['-a', '-c', '-p', list, String(process.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
      return;
    } catch (err) {
      // a thread that exits while taskset walks the list fails the call: walk it again
      if (attempt === 5) throw new Error(`could not pin the generator to CPUs ${list}: ${(err as { stderr?: Buffer }).stderr?.toString().trim()}`);
    }
  }
}

// ---- crypto ceiling ----------------------------------------------------------------------------

interface Ceiling {
  /** tokens/s by the wall clock */
  webcrypto: number;
  nodeCrypto: number;
  /** tokens per CPU-second of the measuring process: what a whole, undisturbed core would do */
  webcryptoPerCpuSecond: number;
  nodeCryptoPerCpuSecond: number;
}

function measureCeiling(): Ceiling {
  const script = path.join(HERE, 'bench/ceiling.js');
  const argv = [NODE, script, opt['ceiling-seconds']!];
  const r = serverCpu !== undefined
    ? spawnSync('taskset', ['-c', serverCpu, ...argv], { encoding: 'utf8' })
    : spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ceiling measurement failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Ceiling;
}

// ---- one phase: warm up, build the pool, measure -----------------------------------------------

interface Phase extends PhaseResult {
  server: string;
  poolSize: number;
  /** the measured window, CLOCK_MONOTONIC microseconds (the clock of V8's CPU profiles) */
  windowUs: { fromUs: number; toUs: number };
  /** share of one core the server process used during the measured window (all its threads) */
  serverCpu: number;
  /** server CPU milliseconds per token: the figure least disturbed by a busy machine */
  cpuMsPerToken: number;
  /** share of one core every Redis and Postgres process used together during the window */
  storeCpu: number;
  /** share of the server's core used by anything but the server (other work on a shared machine, the stores) */
  othersOnServerCore: number;
  /** server CPU µs per token by thread: main-thread user / main-thread kernel / libuv pool / V8 helpers */
  perTokenUs?: ThreadCpu;
  /** share of a core the load generator itself used: far from 100% means it did not limit the rate */
  generatorCpu: number;
}

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

async function phase(server: string, tokenUrl: string, spec: PairSpec, concurrency: number, ceiling: Ceiling, pid?: number): Promise<Phase> {
  const load = new TokenEndpointLoad(tokenUrl, concurrency);
  try {
    const perSecondMax = Math.max(ceiling.webcrypto, ceiling.nodeCrypto) * 1.1;
    const warmPool = await buildPool(spec, Math.ceil(perSecondMax * warmup) + concurrency + 1);
    const first = warmPool.take();
    const probe = await load.post(first.body, first.dpop);
    if (probe.status !== 200) {
      const hint = probe.body.includes('use_dpop_nonce') ? ' (the server requires DPoP nonces; pre-built proofs cannot carry one: bench it with DPOP_NONCE=off)' : '';
      throw new Error(`${server}: the first token request got ${probe.status} ${probe.body}${hint}`);
    }
    pinSelf(generatorCpu);
    const warm = await load.run(warmPool, concurrency, warmup);
    pinSelf(ownCpus);
    // three times the warm rate (JIT still cold then, neighbours noisy), never more than the one-core ceiling allows
    const size = Math.ceil(Math.min(perSecondMax * duration, Math.max(3000, warm.tokensPerSecond * 3 * duration))) + concurrency;
    const pool = await buildPool(spec, size);
    pinSelf(generatorCpu);
    const cpu0 = cpuSeconds(pid);
    const threads0 = threadCpu(pid);
    const store0 = storeCpuSeconds();
    const core0 = serverCore === undefined ? NaN : coreBusySeconds(serverCore);
    const generator0 = process.cpuUsage();
    const fromUs = nowUs();
    const result = await load.run(pool, concurrency, duration);
    const toUs = nowUs();
    const generatorUsage = process.cpuUsage(generator0);
    const generatorShare = (generatorUsage.user + generatorUsage.system) / 1e6 / result.seconds;
    const serverCpuSeconds = cpuSeconds(pid) - cpu0;
    const threads = threadCpuDelta(threads0, threadCpu(pid));
    const us = (x: number) => (1e6 * x) / result.ok;
    const perTokenUs = threads && { mainUser: us(threads.mainUser), mainSys: us(threads.mainSys), pool: us(threads.pool), v8: us(threads.v8) };
    const storeCpu = (storeCpuSeconds() - store0) / result.seconds;
    const othersOnServerCore = serverCore === undefined ? NaN : (coreBusySeconds(serverCore) - core0 - serverCpuSeconds) / result.seconds;
    pinSelf(ownCpus);
    const p: Phase = {
      ...result, server, poolSize: size, windowUs: { fromUs, toUs },
      serverCpu: serverCpuSeconds / result.seconds, cpuMsPerToken: (1000 * serverCpuSeconds) / result.ok, storeCpu, othersOnServerCore, perTokenUs, generatorCpu: generatorShare,
    };
    const cpuNote = pid === undefined ? '' : `  server CPU ${fmt(100 * p.serverCpu, 0)}% (${fmt(p.cpuMsPerToken, 3)} ms/token), Redis+Postgres ${fmt(Math.max(0, 100 * p.storeCpu), 0)}%` +
      `${Number.isFinite(p.othersOnServerCore) ? `, others on core ${serverCore} ${fmt(100 * Math.max(0, p.othersOnServerCore), 0)}%` : ''},`;
    log(`  ${server.padEnd(8)} c=${String(concurrency).padEnd(3)} ${fmt(p.tokensPerSecond, 0).padStart(6)} tokens/s  p50 ${fmt(p.p50Ms, 2)} ms  p99 ${fmt(p.p99Ms, 2)} ms  errors ${p.errors}` +
      `${cpuNote} generator ${fmt(100 * p.generatorCpu, 0)}%${errorNote(p)}`);
    return p;
  } finally {
    load.close();
  }
}

function errorNote(p: PhaseResult): string {
  const parts: string[] = [];
  if (p.errors) parts.push(`FLAGGED: ${Object.entries(p.errorKinds).map(([k, n]) => `${n}× ${k}`).join(', ')}`);
  if (p.inline) parts.push(`pool ran dry: ${p.inline} pairs built inline (generator may have limited the rate)`);
  return parts.length ? `  [${parts.join('; ')}]` : '';
}

const fmt = (n: number, d: number) => (Number.isFinite(n) ? n.toFixed(d) : '-');

function machine() {
  const model = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const git = (...args: string[]) => spawnSync('git', args, { cwd: path.resolve(HERE, '../..'), encoding: 'utf8' }).stdout?.trim() ?? '';
  const commit = `${git('rev-parse', '--short', 'HEAD') || 'unknown'}${git('status', '--porcelain', '--', 'src') ? ' + uncommitted changes in src/' : ''}`;
  return { nproc: cpus().length, cpu: model.trim(), node: process.version, date: new Date().toISOString(), pinned: canPin, commit };
}

// ---- modes -------------------------------------------------------------------------------------

async function keysFor(): Promise<{ clientJwk: JWK; dpopJwk: JWK; publicJwks: { keys: JWK[] } }> {
  const client = await generateClientKey('ES256');
  const dpop = await generateClientKey('ES256');
  return { clientJwk: client.privateJwk, dpopJwk: dpop.privateJwk, publicJwks: client.publicJwks };
}

async function discoverIssuer(base: URL): Promise<{ issuer: string; token_endpoint: string }> {
  for (const p of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
    const res = await fetch(new URL(p, base)).catch(() => undefined);
    if (res?.ok) return (await res.json()) as { issuer: string; token_endpoint: string };
  }
  throw new Error(`no authorization server metadata at ${base.origin}`);
}

async function standalone(): Promise<number> {
  if (!opt.url || !opt['client-id'] || !opt['key-file']) throw new Error('give --url, --client-id and --key-file (or --side-by-side)');
  const base = assertLoopback(opt.url);
  const meta = await discoverIssuer(base);
  // send to the loopback address given, sign for the issuer-based URL the server checks against
  const tokenUrl = new URL(new URL(meta.token_endpoint).pathname, base).toString();
  const readJwk = (f: string) => JSON.parse(readFileSync(f, 'utf8')) as JWK;
  const spec: PairSpec = {
    clientId: opt['client-id'],
    clientJwk: readJwk(opt['key-file']),
    dpopJwk: opt['dpop-key-file'] ? readJwk(opt['dpop-key-file']) : (await generateClientKey('ES256')).privateJwk,
    aud: opt.aud ?? meta.issuer,
    htu: meta.token_endpoint,
    extra: { ...(opt.scope ? { scope: opt.scope } : {}), ...(opt.resource ? { resource: opt.resource } : {}) },
    lifetime: 120,
  };
  log(`measuring the crypto ceiling${serverCpu !== undefined ? ` on core ${serverCpu}` : ''}...`);
  const ceiling = measureCeiling();
  log(`target ${tokenUrl} (issuer ${meta.issuer})`);
  const rows: Phase[] = [];
  for (const c of concurrencies) rows.push(await phase('target', tokenUrl, spec, c, ceiling));
  const m = machine();
  const out: string[] = [];
  out.push(`\n${m.cpu}, ${m.nproc} CPUs, Node ${m.node}, ${m.date}; generator ${generatorCpu !== undefined ? `on core ${generatorCpu}` : 'unpinned'}`);
  out.push(`crypto ceiling (one core, 2 ES256 verify + 1 ES256 sign): WebCrypto ${ceiling.webcrypto}/s (${ceiling.webcryptoPerCpuSecond} per CPU-second), node:crypto sync ${ceiling.nodeCrypto}/s\n`);
  out.push('| concurrency | tokens/s | p50 ms | p99 ms | errors | ÷ ceiling (WebCrypto) |');
  out.push('| ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) out.push(`| ${r.concurrency} | ${fmt(r.tokensPerSecond, 0)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${r.errors}${r.errors ? ' ⚠' : ''} | ${fmt(r.tokensPerSecond / ceiling.webcrypto, 2)} |`);
  process.stdout.write(`${out.join('\n')}\n`);
  const failed = rows.some((r) => r.errors > 0);
  if (failed) process.stdout.write('\nFLAGGED: non-200 responses during the run (see above); the figures are not clean.\n');
  if (opt.json) await writeFile(opt.json, JSON.stringify({ machine: m, ceiling, rows }, null, 2));
  return failed ? 1 : 0;
}

/** the run whose tokens/s is the median of a series (the middle one; the lower middle for an even count) */
function median(runs: Phase[]): Phase {
  return [...runs].sort((a, b) => a.tokensPerSecond - b.tokensPerSecond)[Math.floor((runs.length - 1) / 2)]!;
}

async function sideBySide(): Promise<number> {
  if (!canPin) log('WARNING: taskset or a second core is missing: servers and generator run unpinned');
  const repeat = Number(opt.repeat);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 10) throw new Error('--repeat: 1..10');
  const loadBefore = loadAverage();
  if (loadBefore > 0.5) log(`WARNING: load average ${loadBefore.toFixed(2)} before the run: other work on this machine will disturb the figures`);
  const keys = await keysFor();
  log(`measuring the crypto ceiling${serverCpu !== undefined ? ` on core ${serverCpu}` : ''}...`);
  const ceiling = measureCeiling();
  log(`  WebCrypto ${ceiling.webcrypto}/s (${ceiling.webcryptoPerCpuSecond} per CPU-second), node:crypto ${ceiling.nodeCrypto}/s (${ceiling.nodeCryptoPerCpuSecond} per CPU-second)`);

  const baselineFiles = await prepareBaseline(keys.publicJwks);
  let storage: SigilStorage | undefined;
  const running = new Set<Child>();
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const c of running) await c.stop().catch(() => {});
    await storage?.drop().catch((e: Error) => log(`could not drop the bench database: ${e.message}`));
    await rm(baselineFiles.dir, { recursive: true, force: true });
    if (storage) await rm(storage.dataDir, { recursive: true, force: true });
  };
  for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => void cleanup().finally(() => process.exit(130)));

  const specFor = (clientId: string, issuer: string): PairSpec => ({
    clientId, clientJwk: keys.clientJwk, dpopJwk: keys.dpopJwk, aud: issuer, htu: `${issuer}/token`, lifetime: 120,
  });
  const withServer = async <T>(start: () => Promise<Child>, fn: (s: Child) => Promise<T>): Promise<T> => {
    const s = await start();
    running.add(s);
    try {
      return await fn(s);
    } finally {
      await s.stop();
      running.delete(s);
    }
  };

  try {
    storage = await createSigilStorage();
    let sigilClientId: string | undefined;
    const sigilPhase = async (s: Child, c: number) => {
      sigilClientId ??= await createBenchClient(s.url, { jwks: keys.publicJwks, scope: 'api:read api:write', audiences: [RESOURCE] });
      return phase('sigil', `${s.url}/token`, specFor(sigilClientId, s.issuer), c, ceiling, s.child.pid);
    };
    // baseline and Sigil alternate at each concurrency, so drift on a shared machine hits both alike
    const runs = new Map(concurrencies.map((c) => [c, { baseline: [] as Phase[], sigil: [] as Phase[] }]));
    for (let r = 1; r <= repeat; r++) {
      if (repeat > 1) log(`round ${r}/${repeat}`);
      for (const c of concurrencies) {
        const slot = runs.get(c)!;
        slot.baseline.push(await withServer(() => startBaseline(baselineFiles, serverCpu), (s) => phase('baseline', `${s.url}/token`, specFor('bench-client', s.issuer), c, ceiling, s.child.pid)));
        slot.sigil.push(await withServer(() => startSigil(storage!, serverCpu), (s) => sigilPhase(s, c)));
      }
    }
    const rows = concurrencies.map((c) => {
      const { baseline, sigil } = runs.get(c)!;
      const ratios = baseline.map((b, i) => sigil[i]!.tokensPerSecond / b.tokensPerSecond).sort((a, b) => a - b);
      const ratio = ratios.length % 2 ? ratios[(ratios.length - 1) / 2]! : (ratios[ratios.length / 2 - 1]! + ratios[ratios.length / 2]!) / 2;
      return { concurrency: c, baseline: median(baseline), sigil: median(sigil), ratios, ratio, all: { baseline, sigil } };
    });

    // profiles: one extra phase (at --profile-concurrency) of each server under --cpu-prof (not in the table: the profiler slows it)
    type Profiled = ProfileSummary & { phase: Phase; file: string };
    let profile: { sigil: Profiled; baseline: Profiled } | undefined;
    if (opt.profile) {
      const profiled = async (name: string, start: (dir: string) => Promise<Child>, run: (s: Child) => Promise<Phase>): Promise<Profiled> => {
        const dir = await mkdtemp(path.join(tmpdir(), `sigil-bench-prof-${name}-`));
        log(`profiling ${name} at concurrency ${profileConcurrency} (an extra phase)...`);
        const p = await withServer(() => start(dir), run);
        const file = (await readdir(dir)).find((f) => f.endsWith('.cpuprofile'));
        if (!file) throw new Error(`no .cpuprofile written in ${dir}`);
        log(`  profile: ${path.join(dir, file)}`);
        return { ...(await summarize(path.join(dir, file), 15, p.windowUs)), phase: p, file: path.join(dir, file) };
      };
      profile = {
        baseline: await profiled('baseline', (dir) => startBaseline(baselineFiles, serverCpu, { cpuProfDir: dir }), (s) => phase('baseline', `${s.url}/token`, specFor('bench-client', s.issuer), profileConcurrency, ceiling, s.child.pid)),
        sigil: await profiled('sigil', (dir) => startSigil(storage!, serverCpu, { cpuProfDir: dir }), (s) => sigilPhase(s, profileConcurrency)),
      };
    }
    const loadAfter = loadAverage();

    const m = machine();
    const out: string[] = [];
    out.push(`\n${m.cpu}, ${m.nproc} CPUs, Node ${m.node}, ${m.date}; Sigil at ${m.commit}; load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after`);
    out.push(`${canPin ? `servers pinned to core ${serverCpu}, generator on core ${generatorCpu}` : 'UNPINNED'}; ${duration} s per phase after ${warmup} s warm-up` +
      `${repeat > 1 ? `; ${repeat} rounds, each figure the median round` : ''}`);
    out.push(`crypto ceiling on one core (2 ES256 verify + 1 ES256 sign per token): WebCrypto ${ceiling.webcrypto}/s (${ceiling.webcryptoPerCpuSecond} per CPU-second), node:crypto sync ${ceiling.nodeCrypto}/s (${ceiling.nodeCryptoPerCpuSecond} per CPU-second)`);
    out.push(`Sigil ÷ baseline: the median of the per-round ratios (each round runs the two back to back)\n`);
    out.push('| concurrency | baseline tokens/s | p50 ms | p99 ms | errors | Sigil tokens/s | p50 ms | p99 ms | errors | Sigil ÷ baseline |');
    out.push('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const { concurrency, baseline: b, sigil: s, ratios, ratio } of rows) {
      const spread = ratios.length > 1 ? ` (${fmt(ratios[0]!, 2)}–${fmt(ratios.at(-1)!, 2)})` : '';
      out.push(`| ${concurrency} | ${fmt(b.tokensPerSecond, 0)} | ${fmt(b.p50Ms, 2)} | ${fmt(b.p99Ms, 2)} | ${b.errors}${b.errors ? ' ⚠' : ''} | ${fmt(s.tokensPerSecond, 0)} | ${fmt(s.p50Ms, 2)} | ${fmt(s.p99Ms, 2)} | ${s.errors}${s.errors ? ' ⚠' : ''} | ${fmt(ratio, 2)}${spread}${ratio < 0.8 ? ' < 0.8' : ''} |`);
    }
    out.push('\n| concurrency | baseline ÷ ceiling | Sigil ÷ ceiling | server CPU (baseline / Sigil) | CPU ms per token (baseline / Sigil) | crypto share of that CPU (baseline / Sigil) | Redis+Postgres CPU (Sigil) | others on the server core (baseline / Sigil) |');
    out.push('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    const cryptoMs = 1000 / ceiling.webcryptoPerCpuSecond;
    const pct = (x: number) => (Number.isFinite(x) ? `${Math.max(0, Math.round(100 * x))}%` : '-');
    for (const { concurrency, baseline: b, sigil: s } of rows) {
      out.push(`| ${concurrency} | ${fmt(b.tokensPerSecond / ceiling.webcrypto, 2)} | ${fmt(s.tokensPerSecond / ceiling.webcrypto, 2)} | ${pct(b.serverCpu)} / ${pct(s.serverCpu)} | ${fmt(b.cpuMsPerToken, 2)} / ${fmt(s.cpuMsPerToken, 2)} | ${pct(cryptoMs / b.cpuMsPerToken)} / ${pct(cryptoMs / s.cpuMsPerToken)} | ${pct(s.storeCpu)} | ${pct(b.othersOnServerCore)} / ${pct(s.othersOnServerCore)} |`);
    }
    const split = (t: ThreadCpu | undefined) => (t ? `${fmt(t.mainUser, 0)} / ${fmt(t.mainSys, 0)} / ${fmt(t.pool, 0)} / ${fmt(t.v8, 0)}` : '-');
    out.push('\nserver CPU µs per token by thread — main user / main kernel / libuv pool / V8 helpers:');
    out.push('| concurrency | baseline | Sigil |');
    out.push('| ---: | ---: | ---: |');
    for (const { concurrency, baseline: b, sigil: s } of rows) out.push(`| ${concurrency} | ${split(b.perTokenUs)} | ${split(s.perTokenUs)} |`);
    if (profile) {
      const { sigil: sp, baseline: bp } = profile;
      const head = (p: Profiled) => `${fmt(p.phase.tokensPerSecond, 0)} tokens/s under the profiler; ${p.windowed ? 'the measured phase only' : 'the whole process life'}: ${fmt(p.totalMs, 0)} ms sampled, ${fmt(p.idleMs, 0)} ms idle`;
      out.push(`\nSigil CPU profile at c=${profileConcurrency} (${head(sp)})`);
      out.push('top self time (main thread):');
      for (const e of sp.top) out.push(`  ${fmt(e.percent, 1).padStart(5)}%  ${fmt(e.selfMs, 0).padStart(6)} ms  ${e.name}  ${e.where}${e.note ? `  — ${e.note}` : ''}`);
      out.push('by module (Sigil | baseline):');
      const bMods = new Map(bp.byModule.map((e) => [e.name, e.percent]));
      for (const e of sp.byModule) out.push(`  ${fmt(e.percent, 1).padStart(5)}% | ${fmt(bMods.get(e.name) ?? 0, 1).padStart(5)}%  ${e.name}`);
      out.push(`Sigil's extra CPU per token over the baseline (baseline profile: ${head(bp)}):`);
      const nonIdle = (p: Profiled) => (1000 * (p.totalMs - p.idleMs)) / p.phase.ok;
      out.push(`  main-thread busy time per token: Sigil ${fmt(nonIdle(sp), 0)} µs, baseline ${fmt(nonIdle(bp), 0)} µs (+${fmt(nonIdle(sp) - nonIdle(bp), 0)} µs)`);
      out.push('  by module (self time):');
      for (const e of extraPerTokenByModule(sp, sp.phase.ok, bp, bp.phase.ok).filter((e) => Math.abs(e.extraUs) >= 5)) out.push(`    ${e.extraUs >= 0 ? '+' : '-'}${fmt(Math.abs(e.extraUs), 0).padStart(4)} µs/token  ${e.name}`);
      out.push('  by function (self time):');
      for (const e of extraPerToken(sp, sp.phase.ok, bp, bp.phase.ok)) out.push(`    +${fmt(1000 * e.extraMsPerToken, 0).padStart(4)} µs/token  ${e.name}  ${e.where}${e.note ? `  — ${e.note}` : ''}`);
      out.push('  Sigil-only libraries, inclusive main-thread time (their synchronous work, socket writes included):');
      out.push(`    ${Object.entries(sp.inclusive).filter(([, ms]) => ms > 0).map(([m, ms]) => `${m} ${fmt((1000 * ms) / sp.phase.ok, 0)} µs/token`).join(', ')}`);
    }
    const failed = rows.some((r) => [...r.all.baseline, ...r.all.sigil].some((p) => p.errors > 0));
    if (failed) out.push('\nFLAGGED: non-200 responses during the run (see above); the figures are not clean.');
    const allPhases = rows.flatMap((r) => [...r.all.baseline, ...r.all.sigil]);
    out.push(`\nthe generator used at most ${fmt(100 * Math.max(...allPhases.map((p) => p.generatorCpu)), 0)}% of its core in any phase`);
    const dry = rows.some((r) => [...r.all.baseline, ...r.all.sigil].some((p) => p.inline > 0));
    if (dry) out.push('NOTE: a pool ran dry during a phase (see above); the generator may have limited that figure.');
    const below = rows.filter((r) => r.ratio < 0.8).map((r) => r.concurrency);
    out.push(below.length ? `\nBELOW THE BAR: Sigil < 0.8 × baseline at concurrency ${below.join(', ')}` : '\nSigil ≥ 0.8 × baseline at every concurrency');
    process.stdout.write(`${out.join('\n')}\n`);
    if (opt.json) {
      const brief = (p: Profiled) => ({ file: p.file, phase: { ...p.phase }, totalMs: p.totalMs, idleMs: p.idleMs, top: p.top, byModule: p.byModule, inclusive: p.inclusive });
      const profiles = profile && { sigil: brief(profile.sigil), baseline: brief(profile.baseline) };
      await writeFile(opt.json, JSON.stringify({ machine: m, loadBefore, loadAfter, duration, warmup, repeat, ceiling, rows, profiles }, null, 2));
    }
    return failed ? 1 : 0;
  } finally {
    await cleanup();
  }
}

try {
  process.exit(await (opt['side-by-side'] ? sideBySide() : standalone()));
} catch (err) {
  fail((err as Error).message);
}
