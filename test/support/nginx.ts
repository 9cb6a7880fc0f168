// Debian's nginx in front of the echo upstream, asking the forward-auth service with auth_request:
// the configuration of docs/GATEWAYS.md, generated into a temporary prefix (config, pid, logs, temp
// files) and run in the foreground on a free loopback port; stopped by its PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './server.js';
import { eventually } from './wait.js';

export const NGINX = process.env.NGINX_BIN ?? '/usr/sbin/nginx';
export const nginxAvailable = (): boolean => existsSync(NGINX);

export interface Gateway {
  port: number;
  dir: string;
  config: string;
  logs(): Promise<string>;
  stop(): Promise<void>;
}

/** The site configuration docs/GATEWAYS.md shows, with the addresses filled in. */
export function nginxSite(opts: { port: number; upstreamPort: number; verifierPorts: number[] }): string {
  return `
  # the verifier's answer headers, read once the auth subrequest is done
  map $status $sigil_challenge_403 {
    403 $sigil_www_authenticate;
    default "";
  }
  upstream sigil_verify {
${opts.verifierPorts.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${opts.port};
    server_name api.example.test;

    location / {
      auth_request /_sigil_verify;
      auth_request_set $sigil_client_id $upstream_http_x_sigil_client_id;
      auth_request_set $sigil_sub $upstream_http_x_sigil_sub;
      auth_request_set $sigil_scope $upstream_http_x_sigil_scope;
      auth_request_set $sigil_jti $upstream_http_x_sigil_jti;
      auth_request_set $sigil_act $upstream_http_x_sigil_act;
      auth_request_set $sigil_www_authenticate $upstream_http_www_authenticate;
      auth_request_set $sigil_dpop_nonce $upstream_http_dpop_nonce;
      auth_request_set $sigil_retry_after $upstream_http_retry_after;
      auth_request_set $sigil_verify_status $upstream_status;
      # nginx copies WWW-Authenticate on a 401 itself; on a 403 (insufficient_scope) it is added here
      add_header WWW-Authenticate $sigil_challenge_403 always;
      add_header DPoP-Nonce $sigil_dpop_nonce always;
      # any answer but 2xx/401/403 becomes 500: a 503 from the verifier is turned back into 503
      error_page 500 = @sigil_verify_error;

      # set (or, when empty, removed): a client can never send its own
      proxy_set_header X-Sigil-Client-Id $sigil_client_id;
      proxy_set_header X-Sigil-Sub $sigil_sub;
      proxy_set_header X-Sigil-Scope $sigil_scope;
      proxy_set_header X-Sigil-Jti $sigil_jti;
      proxy_set_header X-Sigil-Act $sigil_act;
      proxy_pass http://127.0.0.1:${opts.upstreamPort};
    }

    location = /_sigil_verify {
      internal;
      proxy_pass http://sigil_verify;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URL $scheme://$host$request_uri;
    }

    location @sigil_verify_error {
      if ($sigil_verify_status = 503) {
        add_header Retry-After $sigil_retry_after always;
        return 503;
      }
      return 500;
    }
  }`;
}

export async function startNginx(opts: { upstreamPort: number; verifierPorts: number[] }): Promise<Gateway> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sigil-nginx-'));
  for (const t of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(path.join(dir, 'tmp', t), { recursive: true });
  const port = await freePort();
  const config = `
worker_processes 1;
error_log ${dir}/error.log info;
pid ${dir}/nginx.pid;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
${nginxSite({ port, ...opts })}
}
`;
  const file = path.join(dir, 'nginx.conf');
  await writeFile(file, config);
  const child: ChildProcess = spawn(NGINX, ['-p', dir, '-c', file, '-e', `${dir}/error.log`, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const logs = async () => `${stderr}${await readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '')}`;
  await Promise.race([
    eventually('nginx to listen', async () => existsSync(path.join(dir, 'nginx.pid')), { timeout: 15_000 }),
    exited.then(() => Promise.reject(new Error(`nginx exited with ${child.exitCode}`))),
  ]).catch(async (err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n${await logs()}`);
  });
  return {
    port, dir, config, logs,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        // QUIT: graceful; by the PID this test started
        process.kill(child.pid!, 'SIGQUIT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
