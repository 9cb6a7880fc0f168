// IETF OAuth Token Status Lists (draft-ietf-oauth-status-list), read the way a gateway reads them:
// every access token names (uri, idx); GET uri is a signed statuslist+jwt whose bit idx is 0 while the
// token is valid and 1 once it is revoked, on every instance within one second (a fresh fetch); the
// event stream announces changes; retired and unknown lists are 404. Decoding is done by an
// independent decoder (test/support/status-list-decoder.ts), never by Sigil's own encoder.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { clientAssertion, requestToken } from '../../src/client/oauth-client.js';
import { encodeStatusList, LIST_CAPACITY } from '../../src/revocation/status-list.js';
import { ASSERTION_TYPE, decodePayload } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startPair, type ServerProcess } from '../support/server.js';
import { adminWithKey, bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient } from '../support/sigil.js';
import {
  decodeStatusList, fetchStatusList, onInstance, STATUS_LIST_MEDIA_TYPE, statusBit, statusRef,
} from '../support/status-list-decoder.js';
import { postForm } from '../support/http.js';
import { observedWithin } from '../support/wait.js';

const PROPAGATION_MS = 1000;

async function revokeOwn(baseUrl: string, issuer: string, client: TestClient, token: string): Promise<number> {
  const res = await postForm(`${baseUrl}/revoke`, { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(client.key, client.clientId, issuer) });
  return res.status;
}

const bitIs = (baseUrl: string, token: string, want: number) => async (): Promise<true | string> => {
  const bit = await statusBit(baseUrl, statusRef(token));
  return bit === want ? true : `bit ${bit}`;
};

interface SseEvent {
  event: string;
  data: string;
  receivedAt: number;
}

/** A Server-Sent Events reader over fetch: events are queued as they arrive; close() aborts. */
async function openEventStream(url: string) {
  const controller = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: controller.signal });
  assert.equal(res.status, 200, `GET ${url}: ${res.status}`);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream\b/);
  const queue: SseEvent[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  void (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line === '' || line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') event = value;
            else if (field === 'data') data.push(value);
          }
          if (data.length) queue.push({ event, data: data.join('\n'), receivedAt: Date.now() });
          wake?.();
        }
      }
    } catch {
      // aborted
    } finally {
      ended = true;
      wake?.();
    }
  })();
  return {
    /** the next queued event matching `accept` (others are dropped), or a failure at `deadline` */
    async next(what: string, deadline: number, accept: (e: SseEvent) => boolean = () => true): Promise<SseEvent> {
      for (;;) {
        while (queue.length) {
          const e = queue.shift()!;
          if (accept(e)) return e;
        }
        if (ended) assert.fail(`${what}: the event stream ended`);
        const left = deadline - Date.now();
        if (left <= 0) assert.fail(`${what}: no such event by the deadline`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    },
    close() {
      controller.abort();
    },
  };
}

describe('token status lists', () => {
  let storage: TestStorage;
  let a: ServerProcess;
  let b: ServerProcess;
  let issuer: string;
  let admin: Admin;
  let adminB: Admin;
  let client: TestClient;

  before(async () => {
    storage = await createTestStorage('statuslist');
    const env = storageEnv(storage);
    ({ a, b, issuer } = await startPair(env));
    admin = await bootstrapAdmin(a.url, issuer);
    adminB = adminWithKey(b.url, issuer, admin.key);
    client = await createClient(admin, { name: 'status list client' });
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await storage?.cleanup();
  });

  it('bits are 1 exactly for revoked tokens and 0 for every other one (neighbours included)', async () => {
    // first in this file, so the only set bits are the ones this test sets
    const tokens: string[] = [];
    for (let i = 0; i < 8; i++) tokens.push((await requestToken(tokenRequest(i % 2 ? b.url : a.url, issuer, client))).access_token);
    const victim = await createClient(admin, { name: 'whole client revoked' });
    const victimTokens = [
      (await requestToken(tokenRequest(a.url, issuer, victim))).access_token,
      (await requestToken(tokenRequest(b.url, issuer, victim))).access_token,
    ];
    for (const t of [...tokens, ...victimTokens]) assert.equal(await statusBit(a.url, statusRef(t)), 0, 'fresh tokens have bit 0');

    assert.equal(await revokeOwn(a.url, issuer, client, tokens[2]!), 200);
    assert.equal(await revokeOwn(b.url, issuer, client, tokens[5]!), 200);
    assert.equal((await admin.call('POST', '/admin/tokens/revoke', { jti: decodePayload(tokens[6]!).jti, reason: 'test' })).status, 200);
    assert.equal((await admin.call('POST', `/admin/clients/${victim.clientId}/revoke`, { reason: 'test' })).status, 200);
    const t0 = Date.now();
    const revoked = [tokens[2]!, tokens[5]!, tokens[6]!, ...victimTokens];
    const revokedSet = new Set(revoked);

    // expected set bits per list
    const expected = new Map<string, Set<number>>();
    for (const t of revoked) {
      const { uri, idx } = statusRef(t);
      if (!expected.has(uri)) expected.set(uri, new Set());
      expected.get(uri)!.add(idx);
    }
    for (const t of tokens) if (!expected.has(statusRef(t).uri)) expected.set(statusRef(t).uri, new Set());

    for (const server of [a, b]) {
      for (const [uri, want] of expected) {
        await observedWithin(`${server === a ? 'A' : 'B'}: the set bits of ${uri} are exactly the revoked tokens' [${[...want].join(',')}]`, t0, PROPAGATION_MS, async () => {
          const got = (await fetchStatusList(server.url, uri)).list.nonZero();
          return JSON.stringify(got) === JSON.stringify([...want].sort((x, y) => x - y)) ? true : `set bits [${got.join(',')}]`;
        });
      }
      for (const t of [...tokens, ...victimTokens]) {
        const ref = statusRef(t);
        const list = (await fetchStatusList(server.url, ref.uri)).list;
        assert.equal(list.status(ref.idx), revokedSet.has(t) ? 1 : 0, `token at ${ref.idx}`);
        if (revokedSet.has(t)) {
          const set = expected.get(ref.uri)!;
          for (const n of [ref.idx - 1, ref.idx + 1]) if (n >= 0 && n < list.size && !set.has(n)) assert.equal(list.status(n), 0, `neighbour ${n} of revoked ${ref.idx}`);
        }
      }
    }
  });

  it('a token\'s status list is a signed application/statuslist+jwt naming its own URI, the same on both instances', async () => {
    const token = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    const ref = statusRef(token);
    assert.ok(ref.uri.startsWith(`${issuer}/status-lists/`), `the uri is issuer-based: ${ref.uri}`);
    assert.ok(Number.isInteger(ref.idx) && ref.idx >= 0, `idx ${ref.idx}`);

    const discovery = await (await fetch(`${b.url}/.well-known/oauth-authorization-server`)).json();
    assert.equal(discovery.status_list_aggregation_endpoint, `${issuer}/status-lists`);

    for (const server of [a, b]) {
      const res = await fetch(onInstance(ref.uri, server.url));
      assert.equal(res.status, 200);
      assert.equal((res.headers.get('content-type') ?? '').split(';')[0], STATUS_LIST_MEDIA_TYPE);
      await res.text();
      const fetched = await fetchStatusList(server.url, ref.uri, { issuer });
      assert.equal(fetched.header.typ, 'statuslist+jwt');
      assert.equal(fetched.payload.sub, ref.uri);
      assert.ok(fetched.payload.ttl! > 0);
      assert.ok(fetched.payload.exp! > fetched.payload.iat!);
      assert.ok(Math.abs(fetched.payload.iat! - Date.now() / 1000) < 60, 'iat is now');
      assert.equal(fetched.list.status(ref.idx), 0, 'a fresh token has bit 0');
      assert.ok(fetched.list.size > ref.idx);

      const all = await (await fetch(`${server.url}/status-lists`)).json();
      assert.ok(Array.isArray(all.status_lists), JSON.stringify(all));
      assert.ok(all.status_lists.includes(ref.uri), `${ref.uri} is in /status-lists: ${JSON.stringify(all)}`);
    }
  });

  it('a revocation flips the bit on the OTHER instance within one second (fresh fetch)', async () => {
    // RFC 7009 on A, read on B (whose copy of the list was just built and cached)
    const first = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    assert.equal(await statusBit(b.url, statusRef(first)), 0);
    assert.equal(await revokeOwn(a.url, issuer, client, first), 200);
    await observedWithin('B: the bit of the token revoked on A', Date.now(), PROPAGATION_MS, bitIs(b.url, first, 1));

    // a whole client revoked on B right after its token was issued on A, read on A
    const other = await createClient(admin, { name: 'revoked on B' });
    const second = (await requestToken(tokenRequest(a.url, issuer, other))).access_token;
    assert.equal(await statusBit(a.url, statusRef(second)), 0);
    const res = await adminB.call('POST', `/admin/clients/${other.clientId}/revoke`, { reason: 'test' });
    const t0 = Date.now();
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await observedWithin('A: the bit of the token of the client revoked on B', t0, PROPAGATION_MS, bitIs(a.url, second, 1));
  });

  it('the event stream on B announces a revocation made on A within one second', async () => {
    const token = (await requestToken(tokenRequest(a.url, issuer, client))).access_token;
    const ref = statusRef(token);
    const stream = await openEventStream(`${b.url}/status-lists/events`);
    try {
      const ready = await stream.next('the ready event', Date.now() + 5000, (e) => e.event === 'ready');
      const readyData = JSON.parse(ready.data);
      assert.ok(Array.isArray(readyData.status_lists), ready.data);
      assert.ok(readyData.status_lists.includes(ref.uri), `the ready event lists ${ref.uri}: ${ready.data}`);
      assert.equal(await statusBit(b.url, ref), 0);

      assert.equal(await revokeOwn(a.url, issuer, client, token), 200);
      const t0 = Date.now();
      const changed = await stream.next(`a status_lists_changed event naming ${ref.uri}`, t0 + PROPAGATION_MS + 50, (e) => {
        if (e.event !== 'status_lists_changed') return false;
        const data = JSON.parse(e.data) as { status_lists?: unknown };
        return Array.isArray(data.status_lists) && data.status_lists.includes(ref.uri);
      });
      assert.ok(changed.receivedAt - t0 <= PROPAGATION_MS, `announced after ${changed.receivedAt - t0} ms`);
      const data = JSON.parse(changed.data);
      assert.equal(typeof data.at, 'number');
      assert.ok(Math.abs(data.at - Date.now() / 1000) < 60, `at is now: ${changed.data}`);
      // a gateway refetches on the event: the list it gets then already has the bit
      assert.equal(await statusBit(b.url, ref), 1, 'a fetch right after the announcement shows the new bit');
    } finally {
      stream.close();
    }
  });

  it('indices are unique under concurrent issuance: 200 tokens, several clients, both instances', async () => {
    const clients = await Promise.all([0, 1, 2, 3].map((i) => createClient(admin, { name: `concurrent ${i}` })));
    const tokens = await Promise.all(
      Array.from({ length: 200 }, (_, i) => requestToken(tokenRequest([a, b][Math.floor(i / 4) % 2]!.url, issuer, clients[i % 4]!)).then((r) => r.access_token)),
    );
    const pairs = tokens.map((t) => statusRef(t));
    const keys = pairs.map((p) => `${p.uri}#${p.idx}`);
    const seen = new Map<string, number>();
    const duplicates: string[] = [];
    keys.forEach((k, i) => {
      if (seen.has(k)) duplicates.push(`${k} (tokens ${seen.get(k)} and ${i})`);
      else seen.set(k, i);
    });
    assert.deepEqual(duplicates, [], 'every (uri, idx) pair is handed out once');
    assert.equal(new Set(tokens.map((t) => decodePayload(t).jti)).size, 200);
    for (const p of pairs) {
      assert.ok(p.uri.startsWith(`${issuer}/status-lists/`), p.uri);
      assert.ok(Number.isInteger(p.idx) && p.idx >= 0, `idx ${p.idx}`);
    }
    // and every one of them is 0 in the list it names, read from either instance
    for (const uri of new Set(pairs.map((p) => p.uri))) {
      for (const server of [a, b]) {
        const { list } = await fetchStatusList(server.url, uri);
        for (const p of pairs.filter((x) => x.uri === uri)) assert.equal(list.status(p.idx), 0, `${uri} #${p.idx}`);
      }
    }
  });

  it('a retired list (its window ended an hour ago) is not served and not listed, even with a set bit', async () => {
    const end = Math.floor(Date.now() / 1000) - 3600;
    const window = Math.floor(end / 900);
    const id = `${window}-999`;
    await storage.sql('INSERT INTO status_lists (id, window_start, window_end, capacity, next_idx) VALUES ($1, to_timestamp($2), to_timestamp($3), $4, $5)',
      [id, end - 900, end, 1024, 16]);
    await storage.sql('INSERT INTO status_bits (list_id, idx) VALUES ($1, $2)', [id, 5]);
    const uri = `${issuer}/status-lists/${id}`;
    for (const server of [a, b]) {
      const res = await fetch(onInstance(uri, server.url));
      const text = await res.text();
      assert.equal(res.status, 404, `${server.url}: ${res.status} ${text.slice(0, 200)}`);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/);
      assert.equal(typeof JSON.parse(text).error, 'string');
      const all = await (await fetch(`${server.url}/status-lists`)).json();
      assert.ok(!all.status_lists.includes(uri), `${uri} must not be listed: ${JSON.stringify(all)}`);
    }
  });

  it('an unknown list is a JSON 404', async () => {
    for (const path of ['/status-lists/999999999-0', '/status-lists/0-0', '/status-lists/not-a-list', '/status-lists/1-1/extra', '/status-lists/1-1.jwt']) {
      for (const server of [a, b]) {
        const res = await fetch(`${server.url}${path}`);
        const text = await res.text();
        assert.equal(res.status, 404, `${path}: ${res.status} ${text.slice(0, 200)}`);
        assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/, path);
        assert.equal(typeof JSON.parse(text).error, 'string', `${path}: ${text}`);
      }
    }
  });

  it('the encoder (unit): indices 0, 7, 8 and capacity-1 round-trip through the independent decoder; -1 and capacity throw RangeError', async () => {
    for (const capacity of [LIST_CAPACITY, 17, 64]) {
      const edges = [0, 7, 8, capacity - 1];
      for (const i of edges) {
        const list = decodeStatusList({ bits: 1, lst: encodeStatusList([i], capacity) });
        assert.equal(list.bytes.length, Math.ceil(capacity / 8), `capacity ${capacity}: byte length`);
        assert.deepEqual(list.nonZero(), [i], `capacity ${capacity}: only bit ${i} is set`);
        assert.equal(list.status(i), 1);
      }
      const all = decodeStatusList({ bits: 1, lst: encodeStatusList(edges, capacity) });
      assert.deepEqual(all.nonZero(), [...new Set(edges)].sort((x, y) => x - y));
      // bit 7 is the most significant bit of byte 0, bit 8 the least significant of byte 1
      assert.equal(all.bytes[0], 0b1000_0001);
      assert.equal(all.bytes[1]! & 1, 1);
      assert.deepEqual(decodeStatusList({ bits: 1, lst: encodeStatusList([], capacity) }).nonZero(), []);
      for (const bad of [-1, capacity, capacity + 1, 1.5, Number.NaN]) {
        assert.throws(() => encodeStatusList([bad], capacity), RangeError, `index ${bad} with capacity ${capacity}`);
      }
    }
    // the decoder itself, on the draft's example (bits 1: statuses 1 0 0 1 1 1 0 1 / 1 1 0 0 0 1 0 1)
    const example = decodeStatusList({ bits: 1, lst: 'eNrbuRgAAhcBXQ' });
    assert.deepEqual([...example.bytes], [0xb9, 0xa3]);
    assert.deepEqual(Array.from({ length: 16 }, (_, i) => example.status(i)), [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]);
  });
});
