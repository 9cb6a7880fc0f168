// Revocation propagation: how long after a revocation made on instance A does instance B act on it?
// Starts two Sigil processes on one Postgres and one Redis (loopback only), issues tokens, then
// revokes them one at a time through A's admin API and times the moment B announces the change on
// its status-list event stream (B's in-memory revocation view has applied it by then).
//   node dist/scripts/bench-revocation.js [--count 1000]
import { parseArgs } from 'node:util';
import { requestToken, dpopProof } from '../src/client/oauth-client.js';
import { createTestStorage } from '../test/support/infra.js';
import { startServer } from '../test/support/server.js';
import { eventually } from '../test/support/wait.js';
import { bootstrapAdmin, createClient, tokenRequest } from '../test/support/sigil.js';

const { values } = parseArgs({ options: { count: { type: 'string', default: '1000' } } });
const count = Number(values.count);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main() {
  const storage = await createTestStorage('benchrev');
  const env = { DATABASE_URL: storage.databaseUrl, REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix, LOG_LEVEL: 'info' };
  const a = await startServer({ env });
  const b = await startServer({ env, issuer: a.issuer });
  try {
    for (const s of [a, b]) await eventually('ready', async () => (await fetch(`${s.url}/ready`)).ok);
    const admin = await bootstrapAdmin(a.url, a.issuer);
    const client = await createClient(admin);
    process.stderr.write(`issuing ${count} tokens...\n`);
    const jtis: string[] = [];
    for (let i = 0; i < count; i++) {
      const t = await requestToken(tokenRequest(i % 2 ? b.url : a.url, a.issuer, client));
      jtis.push(JSON.parse(Buffer.from(t.access_token.split('.')[1]!, 'base64url').toString()).jti);
    }

    // B's change stream: resolve the waiter on each announcement
    const stream = await fetch(`${b.url}/status-lists/events`);
    const reader = stream.body!.getReader();
    let waiter: ((at: number) => void) | undefined;
    let buffered = '';
    void (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffered += Buffer.from(value).toString('utf8');
        let cut;
        while ((cut = buffered.indexOf('\n\n')) >= 0) {
          const event = buffered.slice(0, cut);
          buffered = buffered.slice(cut + 2);
          if (event.startsWith('event: status_lists_changed')) waiter?.(performance.now());
        }
      }
    })();

    // one admin token, a fresh DPoP proof per call (as the CLI does)
    const adminToken = await requestToken({
      tokenEndpoint: `${a.url}/token`, htu: `${a.issuer}/token`, issuer: a.issuer, clientId: 'sigil-admin', clientKey: admin.key, dpopKey: admin.key,
      resource: `${a.issuer}/admin`, scope: 'sigil:admin',
    });
    // from the admin's request leaving (an upper bound: includes A's own work) and from A's answer
    const latencies: number[] = [];
    const afterAnswer: number[] = [];
    process.stderr.write(`revoking ${count} tokens on A, observing B...\n`);
    for (const jti of jtis) {
      const seen = new Promise<number>((resolve, reject) => {
        waiter = resolve;
        setTimeout(() => reject(new Error(`no announcement on B within 5 s for ${jti}`)), 5000).unref();
      });
      const url = `${a.issuer}/admin/tokens/revoke`;
      const proof = await dpopProof(admin.key, 'POST', url, { accessToken: adminToken.access_token });
      const sent = performance.now();
      const res = await fetch(`${a.url}/admin/tokens/revoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `DPoP ${adminToken.access_token}`, dpop: proof },
        body: JSON.stringify({ jti, reason: 'propagation benchmark' }),
      });
      const committed = performance.now();
      if (res.status !== 200) throw new Error(`revocation answered ${res.status}: ${await res.text()}`);
      const at = await seen;
      latencies.push(at - sent);
      afterAnswer.push(Math.max(0, at - committed));
    }
    await reader.cancel();
    latencies.sort((x, y) => x - y);
    afterAnswer.sort((x, y) => x - y);
    const result = {
      revocations: latencies.length,
      from_request_sent: { p50_ms: +percentile(latencies, 50).toFixed(2), p99_ms: +percentile(latencies, 99).toFixed(2), max_ms: +latencies.at(-1)!.toFixed(2) },
      from_answer_received: { p50_ms: +percentile(afterAnswer, 50).toFixed(2), p99_ms: +percentile(afterAnswer, 99).toFixed(2), max_ms: +afterAnswer.at(-1)!.toFixed(2) },
      over_1s: latencies.filter((l) => l > 1000).length,
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await a.stop();
    await b.stop();
    await storage.cleanup();
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
