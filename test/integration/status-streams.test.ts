// The status-list event stream at scale, against a real server on real Postgres and Redis: hundreds of
// gateways hold a stream and every one of them hears a revocation; no MaxListeners warning; one
// address cannot take every stream (it gets 429, others still get theirs); on shutdown every stream is
// ended cleanly and the process exits without waiting for them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { requestToken } from '../../src/client/oauth-client.js';
import { holdStream, type HeldStream } from '../support/event-stream.js';
import { decodePayload, untilReady } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin } from '../support/sigil.js';
import { statusRef } from '../support/status-list-decoder.js';
import { eventually } from '../support/wait.js';

const ADDRESSES = 30;
const PER_ADDRESS = 10;
/** 127.0.0.2 … 127.0.0.31: distinct source addresses, all loopback */
const addressOf = (i: number) => `127.0.0.${2 + i}`;

describe('status-list event streams at scale', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;
  const streams: HeldStream[] = [];

  before(async () => {
    storage = await createTestStorage('streams');
    server = await startServer({
      env: { ...storageEnv(storage), STATUS_STREAMS_PER_ADDRESS: String(PER_ADDRESS) },
    });
    await untilReady(server.url);
    admin = await bootstrapAdmin(server.url, server.issuer);
  });
  after(async () => {
    for (const s of streams) s.close();
    await server?.stop();
    await storage?.cleanup();
  });

  it(`${ADDRESSES * PER_ADDRESS} streams from ${ADDRESSES} addresses all hear a revocation; no warning on stderr`, async () => {
    const client = await createClient(admin, { name: 'streams' });
    const token = (await requestToken(tokenRequest(server.url, server.issuer, client))).access_token;
    const { uri } = statusRef(token);
    for (let a = 0; a < ADDRESSES; a++) {
      const opened = await Promise.all(Array.from({ length: PER_ADDRESS }, () => holdStream(server.url, { localAddress: addressOf(a) })));
      for (const s of opened) assert.equal(s.status, 200, s.text());
      streams.push(...opened);
    }
    await eventually('every stream got its ready event', async () => streams.every((s) => s.events().some((e) => e.event === 'ready')), { timeout: 30_000 });

    const revoked = await admin.call('POST', '/admin/tokens/revoke', { jti: decodePayload(token).jti, reason: 'stream test' });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    const heard = (s: HeldStream) => s.events().some((e) => e.event === 'status_lists_changed' && (JSON.parse(e.data) as { status_lists: string[] }).status_lists.includes(uri));
    await eventually(`every stream heard the change of ${uri}`, async () => streams.every(heard), { timeout: 30_000 });
    const warnings = server.logs.filter((l) => /warning|MaxListeners/i.test(l) && !l.startsWith('{'));
    assert.deepEqual(warnings, [], 'nothing but JSON logs: no MaxListeners (or other) warning on stderr');
    assert.match(streams[0]!.text(), /(^|\n)retry: \d+\n/, 'a reconnect hint');
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, new RegExp(`^sigil_status_streams_open ${ADDRESSES * PER_ADDRESS}$`, 'm'));
  });

  it('one address gets at most STATUS_STREAMS_PER_ADDRESS streams (429); another address still gets one', async () => {
    // X-Forwarded-For is no way around it: anyone can send one, so the socket's address counts
    const refused = await holdStream(server.url, { localAddress: addressOf(0), headers: { 'x-forwarded-for': '203.0.113.9' } });
    assert.equal(refused.status, 429);
    assert.match(String(refused.headers['content-type']), /^application\/json/);
    assert.ok(refused.headers['retry-after'], 'Retry-After');
    await refused.ended;
    assert.equal(JSON.parse(refused.text()).error, 'temporarily_unavailable');
    const other = await holdStream(server.url, { localAddress: '127.0.0.200' });
    assert.equal(other.status, 200);
    streams.push(other);
    // a stream that closes frees its slot
    streams[0]!.close();
    await eventually('the freed slot is usable again', async () => {
      const s = await holdStream(server.url, { localAddress: addressOf(0) });
      if (s.status === 200) return streams.push(s) > 0;
      s.close();
      return false;
    });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /^sigil_status_streams_refused_total\{reason="per_address"\} [1-9]/m);
  });

  it('shutdown ends every stream cleanly and does not wait for them', async () => {
    const open = streams.filter((s) => s.status === 200 && s !== streams[0]);
    await server.stop();
    assert.equal(server.child.signalCode, null, 'the server exited by itself, it was not killed after the stop timeout');
    assert.equal(server.child.exitCode, 0);
    const ends = await Promise.all(open.map((s) => s.ended));
    assert.deepEqual(new Set(ends), new Set(['end']), 'every stream got a clean end of its body, none was cut');
  });
});
