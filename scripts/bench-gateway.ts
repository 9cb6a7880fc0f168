// What the forward-auth step costs behind nginx: request latency (p50, p99) at concurrency 1 and 32
// through nginx with `auth_request` to `sigil verify-server` (the configuration of docs/GATEWAYS.md),
// against the same nginx proxying to the same upstream without it. Every request carries the same
// DPoP-bound token and a fresh proof (made before the clock starts: the client's cost, not the
// gateway's), so both sides move the same bytes. Sigil, verify-server, nginx and the upstream are
// separate processes on loopback; this process is only the load.
//
//   npm run build && node dist/scripts/bench-gateway.js [--seconds 10] [--revocations 200] [--gateway-root DIR]
//
// Then revocation reaching the gateway: for each of --revocations tokens (each accepted through nginx
// first), from the revoke call returning (POST /admin/tokens/revoke, what `sigil tokens revoke` calls)
// to the first request nginx refuses, requests made one after the other as a busy API's arrive.
//
// The verify-server and the nginx site come from the forward-auth work (src/gateway/, test/support/
// nginx.ts); they are loaded at run time from --gateway-root (default: this checkout, once merged).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, createPrivateKey, randomUUID, sign, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { dpopProof, generateClientKey, keyPairFromPrivateJwk, requestToken } from '../src/client/oauth-client.js';
import { createTestStorage } from '../test/support/infra.js';
import { freePort, ROOT, startServer } from '../test/support/server.js';
import { bootstrapAdmin, createClient, tokenRequest } from '../test/support/sigil.js';
import { eventually } from '../test/support/wait.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '10' }, revocations: { type: 'string', default: '200' }, 'gateway-root': { type: 'string', default: ROOT },
} });
const seconds = Number(values.seconds);
const revocations = Number(values.revocations);
const gatewayRoot = path.resolve(values['gateway-root']!);
const NGINX = process.env.NGINX_BIN ?? '/usr/sbin/nginx';
const HOST = 'api.example.test';
const AUDIENCE = 'https://api.example.test/orders';
const PATH = '/orders/1';
/** what nginx puts in X-Original-URL ($scheme://$host$request_uri): the proof's htu */
const HTU = `http://${HOST}${PATH}`;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function child(cmd: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const c = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  c.stderr!.on('data', (b: Buffer) => process.stderr.write(`[${path.basename(args[0] ?? cmd)}] ${b}`));
  return c;
}

const UPSTREAM = `require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.end('{"ok":true}')); }).listen(+process.env.PORT, '127.0.0.1')`;

async function main() {
  const { nginxSite } = (await import(path.join(gatewayRoot, 'dist/test/support/nginx.js'))) as { nginxSite(o: { port: number; upstreamPort: number; verifierPorts: number[] }): string };
  const storage = await createTestStorage('benchgw');
  const server = await startServer({ reachableIssuer: true, env: { DATABASE_URL: storage.databaseUrl, REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix } });
  const procs: ChildProcess[] = [];
  const dir = await mkdtemp(path.join(tmpdir(), 'sigil-bench-gw-'));
  try {
    await eventually('ready', async () => (await fetch(`${server.url}/ready`)).ok);
    const admin = await bootstrapAdmin(server.url, server.issuer);
    const client = await createClient(admin, { audiences: [AUDIENCE], scope: 'orders:read' });
    // the DPoP key's private JWK: the proofs are made with node:crypto
    const dpopJwk = (await generateClientKey('ES256')).privateJwk;
    const dpopKey = await keyPairFromPrivateJwk(dpopJwk);
    const token = (await requestToken(tokenRequest(server.url, server.issuer, client, { resource: AUDIENCE, scope: 'orders:read', dpopKey }))).access_token;

    const [upstreamPort, verifyPort, authPort, plainPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    procs.push(child(process.execPath, ['-e', UPSTREAM], { PATH: process.env.PATH, PORT: String(upstreamPort) }));
    const config = path.join(dir, 'verify.json');
    await writeFile(config, JSON.stringify({ routes: [{ host: HOST, prefix: '/orders', audience: AUDIENCE, scopes: ['orders:read'], methods: ['GET'] }] }));
    procs.push(child(process.execPath, [path.join(gatewayRoot, 'bin/sigil.js'), 'verify-server', '--config', config], {
      PATH: process.env.PATH, SIGIL_ISSUER: server.issuer, VERIFY_PORT: String(verifyPort),
    }));
    await eventually('verify-server ready', async () => (await fetch(`http://127.0.0.1:${verifyPort}/health`)).ok, { timeout: 15_000 });

    // one nginx, two sites: the docs' forward-auth site, and the same proxy without auth_request
    for (const t of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(path.join(dir, 'tmp', t), { recursive: true });
    const nginxConf = path.join(dir, 'nginx.conf');
    await writeFile(nginxConf, `
worker_processes 1;
error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body; proxy_temp_path ${dir}/tmp/proxy; fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi; scgi_temp_path ${dir}/tmp/scgi;
${nginxSite({ port: authPort, upstreamPort, verifierPorts: [verifyPort] })}
  server {
    listen 127.0.0.1:${plainPort};
    # the docs' site minus auth_request: the same proxy_pass to the upstream
    location / {
      proxy_pass http://127.0.0.1:${upstreamPort};
    }
  }
}
`);
    procs.push(child(NGINX, ['-p', dir, '-c', nginxConf, '-e', `${dir}/error.log`, '-g', 'daemon off;'], { PATH: process.env.PATH }));
    await eventually('nginx', async () => (await fetch(`http://127.0.0.1:${plainPort}/`)).ok, { timeout: 15_000 });

    // the client's proofs, made with node:crypto (fast) before each phase, each used once
    const key: KeyObject = createPrivateKey({ key: dpopJwk as never, format: 'jwk' });
    const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty: 'EC', crv: dpopJwk.crv, x: dpopJwk.x, y: dpopJwk.y } })).toString('base64url');
    const proofFor = (accessToken: string) => {
      const ath = createHash('sha256').update(accessToken).digest('base64url');
      const input = `${header}.${Buffer.from(JSON.stringify({ htm: 'GET', htu: HTU, iat: Math.floor(Date.now() / 1000), jti: randomUUID(), ath })).toString('base64url')}`;
      return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
    };
    const proof = () => proofFor(token);

    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    /** one request through nginx: its status */
    const statusOf = (port: number, dpop: string, accessToken = token) => new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: PATH, agent, headers: { host: HOST, authorization: `DPoP ${accessToken}`, dpop } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
    const call = async (port: number, dpop: string) => {
      const start = performance.now();
      const status = await statusOf(port, dpop);
      if (status !== 200) throw new Error(`answer ${status}`);
      return performance.now() - start;
    };

    async function phase(port: number, concurrency: number, ms: number): Promise<number[]> {
      // enough proofs for the phase: at most ~20k requests/s on this machine
      const proofs = Array.from({ length: Math.ceil((ms / 1000) * 20_000) }, proof);
      const latencies: number[] = [];
      const until = performance.now() + ms;
      let next = 0;
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (performance.now() < until && next < proofs.length) latencies.push(await call(port, proofs[next++]!));
      }));
      return latencies;
    }

    const results: Record<string, unknown> = {};
    for (const concurrency of [1, 32]) {
      await phase(authPort, concurrency, 1000); // warm-up: JIT, keep-alive connections, caches
      await phase(plainPort, concurrency, 1000);
      // interleaved halves, so a slow moment of the shared machine hurts both alike
      const auth: number[] = [];
      const plain: number[] = [];
      for (let i = 0; i < 2; i++) {
        auth.push(...await phase(authPort, concurrency, (seconds * 1000) / 4));
        plain.push(...await phase(plainPort, concurrency, (seconds * 1000) / 4));
      }
      auth.sort((a, b) => a - b);
      plain.sort((a, b) => a - b);
      const stats = (l: number[]) => ({ requests: l.length, p50_ms: +percentile(l, 50).toFixed(3), p99_ms: +percentile(l, 99).toFixed(3) });
      results[`concurrency_${concurrency}`] = {
        nginx_with_forward_auth: stats(auth),
        nginx_without: stats(plain),
        added_p50_ms: +(percentile(auth, 50) - percentile(plain, 50)).toFixed(3),
        added_p99_ms: +(percentile(auth, 99) - percentile(plain, 99)).toFixed(3),
      };
    }

    // revocation reaching the gateway (verify-server keeps the status-list change stream open)
    const tokens: { value: string; jti: string }[] = [];
    for (let i = 0; i < revocations; i++) {
      const value = (await requestToken(tokenRequest(server.url, server.issuer, client, { resource: AUDIENCE, scope: 'orders:read', dpopKey }))).access_token;
      const status = await statusOf(authPort, proofFor(value), value);
      if (status !== 200) throw new Error(`a fresh token was answered ${status} through nginx`);
      tokens.push({ value, jti: JSON.parse(Buffer.from(value.split('.')[1]!, 'base64url').toString()).jti as string });
    }
    const adminToken = (await requestToken({
      tokenEndpoint: `${server.url}/token`, htu: `${server.issuer}/token`, issuer: server.issuer, clientId: 'sigil-admin', clientKey: admin.key, dpopKey: admin.key,
      resource: `${server.issuer}/admin`, scope: 'sigil:admin',
    })).access_token;
    const reach: number[] = [];
    let requestsMade = 0;
    for (const { value, jti } of tokens) {
      const res = await fetch(`${server.url}/admin/tokens/revoke`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json', authorization: `DPoP ${adminToken}`,
          dpop: await dpopProof(admin.key, 'POST', `${server.issuer}/admin/tokens/revoke`, { accessToken: adminToken }),
        },
        body: JSON.stringify({ jti, reason: 'gateway revocation benchmark' }),
      });
      if (res.status !== 200) throw new Error(`revocation answered ${res.status}: ${await res.text()}`);
      const returned = performance.now();
      for (;;) {
        requestsMade++;
        const status = await statusOf(authPort, proofFor(value), value);
        if (status === 401) break;
        if (status !== 200) throw new Error(`a revoked token was answered ${status}`);
        if (performance.now() - returned > 5000) throw new Error(`token ${jti} still accepted through nginx 5 s after its revocation`);
      }
      reach.push(performance.now() - returned);
    }
    reach.sort((a, b) => a - b);
    results.revocation_reaching_nginx = {
      revocations: reach.length,
      from_revoke_returning_to_first_refusal: { p50_ms: +percentile(reach, 50).toFixed(2), p99_ms: +percentile(reach, 99).toFixed(2), max_ms: +reach.at(-1)!.toFixed(2) },
      requests_made: requestsMade,
      over_1s: reach.filter((l) => l > 1000).length,
    };
    agent.destroy();
    console.log(JSON.stringify(results, null, 2));
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await server.stop();
    await storage.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
