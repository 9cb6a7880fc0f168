// Running the real `sigil` CLI (bin/sigil.js, on this Node) as a child process, the way an admin does.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import type { JWK } from 'jose';
import { generateClientKey } from '../../src/client/oauth-client.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { ROOT, startServer, type ServerProcess } from '../support/server.js';

export const SIGIL_BIN = path.join(ROOT, 'bin/sigil.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** SIGIL_URL */
  url: string;
  /** SIGIL_KEYS_DIR; unset means the CLI's default (./keys under cwd) */
  keysDir?: string;
  cwd: string;
  /** more environment for the CLI (e.g. SIGIL_INSECURE_HTTP) */
  env?: Record<string, string>;
}

/** Run `sigil ...args` with only the environment given (nothing leaks in from the test runner's SIGIL_*). */
export function sigil(args: string[], opts: CliOptions): Promise<CliRun> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', SIGIL_URL: opts.url };
  if (opts.keysDir) env.SIGIL_KEYS_DIR = opts.keysDir;
  // a coverage run (npm test) collects the CLI's coverage too
  if (process.env.NODE_V8_COVERAGE) env.NODE_V8_COVERAGE = process.env.NODE_V8_COVERAGE;
  Object.assign(env, opts.env);
  const child = spawn(process.execPath, [SIGIL_BIN, ...args], { cwd: opts.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The run succeeded and stdout is exactly one JSON document (JSON.parse refuses anything more). */
export function jsonOf(run: CliRun): any {
  assert.equal(run.code, 0, `sigil failed (${run.code}): ${run.stderr}`);
  return JSON.parse(run.stdout);
}

/** An expected failure: this exit code, nothing on stdout, a message and no stack trace on stderr. */
export function assertFailure(run: CliRun, code: number, message: RegExp): void {
  assert.equal(run.code, code, `expected exit ${code}, got ${run.code}; stderr: ${run.stderr}`);
  assert.equal(run.stdout, '', 'nothing on stdout when a command fails');
  assert.match(run.stderr, message);
  assert.doesNotMatch(run.stderr, /^\s+at /m, 'no stack trace for an expected error');
}

export async function tempDir(label: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `sigil-cli-${label}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A new client key pair: the private JWK (kept by the test) and its public JWKS written to `file`. */
export async function clientKeyFile(file: string): Promise<{ privateJwk: JWK; publicJwks: { keys: JWK[] } }> {
  const pair = await generateClientKey('ES256');
  await writeFile(file, JSON.stringify(pair.publicJwks));
  return pair;
}

/** A Sigil server on storage of its own, a working directory, and the CLI options that reach it. */
export interface CliWorld {
  storage: TestStorage;
  server: ServerProcess;
  work: { dir: string; remove(): Promise<void> };
  /** SIGIL_KEYS_DIR is <work>/keys */
  opts: CliOptions;
  close(): Promise<void>;
}

/**
 * The world of a CLI test file, with `sigil init` run already (the admin key in opts.keysDir); `env`
 * adds to the server's environment (e.g. workloadServerEnv, for a server that must fetch from test servers).
 */
export async function initialisedCliWorld(label: string, env: Record<string, string> = {}): Promise<CliWorld> {
  const storage = await createTestStorage(`cli_${label}`);
  const server = await startServer({ env: { ...storageEnv(storage), ...env } });
  const work = await tempDir(label);
  const opts: CliOptions = { url: server.url, cwd: work.dir, keysDir: path.join(work.dir, 'keys') };
  jsonOf(await sigil(['init', '--json'], opts));
  return {
    storage, server, work, opts,
    async close() {
      await server.stop();
      await storage.cleanup();
      await work.remove();
    },
  };
}
