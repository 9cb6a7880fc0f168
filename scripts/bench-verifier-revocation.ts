// Revocation reaching an API that checks tokens with sigil/verifier: from the revoke call returning
// (POST /admin/tokens/revoke, what `sigil tokens revoke JTI` calls, answered by the server) to the
// first request the verifier refuses. One Sigil on Postgres and Redis (loopback), the verifier in this
// process with the status-list change stream open (its default), a fresh DPoP proof per request.
//
//   npm run build && node dist/scripts/bench-verifier-revocation.js [--count 200]
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { dpopProof, requestToken } from '../src/client/oauth-client.js';
import { createVerifier, VerifierError } from '../src/verifier/index.js';
import { createTestStorage } from '../test/support/infra.js';
import { startServer } from '../test/support/server.js';
import { bootstrapAdmin, createClient, tokenRequest } from '../test/support/sigil.js';
import { eventually } from '../test/support/wait.js';

const { values } = parseArgs({ options: { count: { type: 'string', default: '200' } } });
const count = Number(values.count);
const AUDIENCE = 'https://api.bench.example/orders';
const API = 'https://api.bench.example/orders/1';

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main() {
  const storage = await createTestStorage('benchvrev');
  const server = await startServer({ reachableIssuer: true, env: { DATABASE_URL: storage.databaseUrl, REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix } });
  const verify = createVerifier({ issuer: server.issuer, audience: AUDIENCE });
  try {
    await eventually('ready', async () => (await fetch(`${server.url}/ready`)).ok);
    const admin = await bootstrapAdmin(server.url, server.issuer);
    const client = await createClient(admin, { audiences: [AUDIENCE], scope: 'orders:read' });
    const request = async (token: string) => ({
      method: 'GET', url: API,
      headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(client.dpopKey, 'GET', API, { accessToken: token }) },
    });
    process.stderr.write(`issuing ${count} tokens, each accepted once by the verifier...\n`);
    const tokens: { token: string; jti: string }[] = [];
    for (let i = 0; i < count; i++) {
      const t = (await requestToken(tokenRequest(server.url, server.issuer, client, { resource: AUDIENCE, scope: 'orders:read' }))).access_token;
      await verify(await request(t));
      tokens.push({ token: t, jti: JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()).jti as string });
    }
    await eventually('the verifier\'s change stream', async () => verify.stats.statusStreamReady);

    const adminToken = (await requestToken({
      tokenEndpoint: `${server.url}/token`, htu: `${server.issuer}/token`, issuer: server.issuer, clientId: 'sigil-admin', clientKey: admin.key, dpopKey: admin.key,
      resource: `${server.issuer}/admin`, scope: 'sigil:admin',
    })).access_token;
    const latencies: number[] = [];
    let attempts = 0;
    process.stderr.write(`revoking ${count} tokens, each followed by requests until the verifier refuses it...\n`);
    for (const { token, jti } of tokens) {
      const url = `${server.issuer}/admin/tokens/revoke`;
      const proof = await dpopProof(admin.key, 'POST', url, { accessToken: adminToken });
      const res = await fetch(`${server.url}/admin/tokens/revoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `DPoP ${adminToken}`, dpop: proof },
        body: JSON.stringify({ jti, reason: `verifier revocation benchmark ${randomUUID()}` }),
      });
      if (res.status !== 200) throw new Error(`revocation answered ${res.status}: ${await res.text()}`);
      const returned = performance.now();
      // requests keep coming, one at a time, as a busy API's would; the event loop runs between them
      for (;;) {
        attempts++;
        try {
          await verify(await request(token));
        } catch (err) {
          if (!(err instanceof VerifierError) || err.description !== 'the access token has been revoked') throw err;
          break;
        }
        if (performance.now() - returned > 5000) throw new Error(`token ${jti} still accepted 5 s after its revocation`);
        await new Promise((r) => setImmediate(r));
      }
      latencies.push(performance.now() - returned);
    }
    latencies.sort((x, y) => x - y);
    console.log(JSON.stringify({
      revocations: latencies.length,
      from_revoke_returning_to_first_refusal: {
        p50_ms: +percentile(latencies, 50).toFixed(2), p99_ms: +percentile(latencies, 99).toFixed(2), max_ms: +latencies.at(-1)!.toFixed(2),
      },
      requests_made: attempts,
      status_list_fetches: verify.stats.statusListFetches,
      over_1s: latencies.filter((l) => l > 1000).length,
    }, null, 2));
  } finally {
    await verify.close();
    await server.stop();
    await storage.cleanup();
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
