// Debian's caddy in front of the echo upstream, asking the forward-auth service with forward_auth: the
// Caddyfile of docs/GATEWAYS.md, generated into a temporary directory (which is also Caddy's HOME and
// XDG dirs: nothing is written elsewhere), run in the foreground on a free loopback port, stopped by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Gateway } from './nginx.js';
import { freePort } from './server.js';
import { eventually } from './wait.js';

export const CADDY = process.env.CADDY_BIN ?? '/usr/bin/caddy';
export const caddyAvailable = (): boolean => existsSync(CADDY);

/** The site block docs/GATEWAYS.md shows, with the addresses filled in. */
export function caddySite(opts: { port: number; upstreamPort: number; verifierPorts: number[] }): string {
  return `
http://:${opts.port} {
	bind 127.0.0.1
	route {
		forward_auth ${opts.verifierPorts.map((p) => `127.0.0.1:${p}`).join(' ')} {
			uri /verify
			copy_headers X-Sigil-Client-Id X-Sigil-Sub X-Sigil-Scope X-Sigil-Jti X-Sigil-Act
		}
		# Caddy 2.6 copies a header the answer lacks as its unexpanded placeholder (2.7 removes it):
		# X-Sigil-Act is absent for tokens that were not exchanged
		@no_act header_regexp X-Sigil-Act ^\{http\.reverse_proxy\.header\.
		request_header @no_act -X-Sigil-Act
		reverse_proxy 127.0.0.1:${opts.upstreamPort}
	}
}
`;
}

const listening = (port: number) => new Promise<boolean>((resolve) => {
  const s = connect(port, '127.0.0.1');
  s.once('connect', () => {
    s.destroy();
    resolve(true);
  });
  s.once('error', () => resolve(false));
});

export async function startCaddy(opts: { upstreamPort: number; verifierPorts: number[] }): Promise<Gateway> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sigil-caddy-'));
  const port = await freePort();
  const config = `{
	admin off
	auto_https off
}
${caddySite({ port, ...opts })}`;
  const file = path.join(dir, 'Caddyfile');
  await writeFile(file, config);
  const env = { PATH: process.env.PATH ?? '', HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir };
  const child: ChildProcess = spawn(CADDY, ['run', '--config', file, '--adapter', 'caddyfile'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  for (const s of [child.stdout!, child.stderr!]) s.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await Promise.race([
    eventually('caddy to listen', () => listening(port), { timeout: 15_000 }),
    exited.then(() => Promise.reject(new Error(`caddy exited with ${child.exitCode}`))),
  ]).catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n${output}`);
  });
  return {
    port, dir, config,
    logs: async () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
