// The status-list change stream's fan-out on a real HTTP server and real sockets: a reader that stops
// reading is closed instead of making the server buffer without bound (and the others go on), a
// stream ends at its lifetime with a reconnect hint, close() ends every stream even an undrained one,
// and the per-address bound counts IPv6 hosts by their /64.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createMetrics } from '../../src/server/metrics.js';
import { sourceOf, StatusStreams, type StatusStreamsOptions } from '../../src/server/status-streams.js';
import {  } from '../support/server.js';
import { eventually, settlesWithin } from '../support/wait.js';

/** A hub on its own HTTP server. */
async function hubServer(opts: Partial<StatusStreamsOptions> = {}, lists: string[] = ['1-0']) {
  const metrics = createMetrics();
  const hub = new StatusStreams({
    max: 100, perAddress: 100, lifetimeSeconds: 3600, liveListIds: async () => lists, uriOf: (id) => `https://issuer.test/status-lists/${id}`, metrics, ...opts,
  });
  const server = await listening(hub);
  return { hub, metrics, server, port: (server.address() as AddressInfo).port };
}

/** An HTTP server on which every request opens a stream of `hub` (or is answered the refusal). */
async function listening(hub: StatusStreams): Promise<Server> {
  const server: Server = createServer((req, res) => {
    const refused = hub.open(req, res);
    if (refused) res.writeHead(429, { connection: 'close' }).end(refused);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

interface RawStream {
  socket: Socket;
  text(): string;
  closed: Promise<void>;
}

/** GET over a raw socket; `read: false` stops reading after the request is sent (a stalled reader). */
function rawStream(port: number, read = true): Promise<RawStream> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('error', () => {});
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      socket.write('GET /status-lists/events HTTP/1.1\r\nHost: test\r\n\r\n');
      if (read) socket.on('data', (d: string) => (received += d));
      else socket.pause();
      resolve({ socket, text: () => received, closed });
    });
    socket.once('error', reject);
  });
}

const endedBy = async (metrics: ReturnType<typeof createMetrics>, reason: string) =>
  (await metrics.statusStreamsEnded.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

describe('status stream fan-out', () => {
  describe('a reader that stops reading', () => {
    // each announcement names every list: ~100 KB, so a stalled reader fills every buffer quickly
    const manyLists = Array.from({ length: 2000 }, (_, i) => `${1_800_000_000 + i}-${i}`);
    let h: Awaited<ReturnType<typeof hubServer>>;
    before(async () => {
      h = await hubServer({}, manyLists);
    });
    after(() => h.server.close());

    it('is closed once it has a bounded amount queued; a reading stream goes on receiving', async () => {
      const stalled = await rawStream(h.port, false);
      const reading = await rawStream(h.port);
      await eventually('both streams open', async () => h.hub.size === 2);
      let announced = 0;
      // past the kernel's socket buffers (a few MB on loopback), the process would start to hold it
      while (h.hub.size === 2) {
        assert.ok(announced < 400, `the stalled stream was still open after ${announced} announcements (~${announced / 10} MB)`);
        h.hub.announce(undefined);
        announced++;
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.equal(await endedBy(h.metrics, 'slow_reader'), 1);
      // the connection was reset: the client sees it as soon as it reads again
      stalled.socket.resume();
      await stalled.closed;
      assert.equal(h.hub.size, 1, 'the reading stream is still open');
      const before = reading.text().length;
      h.hub.announce(['1-0']);
      await eventually('the reading stream receives the next change', async () => reading.text().slice(before).includes('{"status_lists":["https://issuer.test/status-lists/1-0"]'));
      reading.socket.destroy();
      await eventually('the closed stream is forgotten', async () => h.hub.size === 0);
      assert.equal((await h.metrics.statusStreamsOpen.get()).values[0]?.value, 0);
    });
  });

  describe('lifetime', () => {
    let h: Awaited<ReturnType<typeof hubServer>>;
    before(async () => {
      h = await hubServer({ lifetimeSeconds: 1 });
    });
    after(() => h.server.close());

    it('ends a stream after STATUS_STREAM_LIFETIME, having told the client when to reconnect', async () => {
      const s = await rawStream(h.port);
      await settlesWithin(s.closed, 10_000, 'the stream ends at its lifetime');
      const text = s.text();
      assert.match(text, /^HTTP\/1\.1 200 /);
      assert.match(text, /\r\ncontent-type: text\/event-stream\r\n/i);
      assert.match(text, /\nretry: \d+\n\n/, 'an SSE retry hint');
      assert.match(text, /\nevent: ready\ndata: \{"status_lists":\["https:\/\/issuer\.test\/status-lists\/1-0"\]\}\n\n/);
      assert.match(text, /\r\n0\r\n\r\n$/, 'a clean end of the chunked body, not a cut connection');
      assert.equal(await endedBy(h.metrics, 'lifetime'), 1);
      assert.equal(h.hub.size, 0);
    });
  });

  describe('close()', () => {
    let h: Awaited<ReturnType<typeof hubServer>>;
    before(async () => {
      // no slow-reader cut here: the stalled stream must still be open, with more queued than the kernel takes
      h = await hubServer({ bufferLimitBytes: 1 << 30 }, Array.from({ length: 2000 }, (_, i) => `${1_800_000_000 + i}-${i}`));
    });
    after(() => h.server.close());

    it('ends every stream, a stalled one included, and refuses new ones', async () => {
      const reading = await rawStream(h.port);
      const stalled = await rawStream(h.port, false);
      await eventually('both streams open', async () => h.hub.size === 2);
      // leave the stalled one with ~15 MB queued that it will never read: past the socket buffers
      for (let i = 0; i < 150; i++) {
        h.hub.announce(undefined);
        await new Promise((r) => setTimeout(r, 2));
      }
      assert.equal(h.hub.size, 2);
      // as Sigil shuts down: the server stops accepting (its close waits for open responses), then streams end
      const serverClosed = new Promise<void>((resolve) => h.server.close(() => resolve()));
      await settlesWithin(h.hub.close(), 10_000, 'close() resolves');
      await settlesWithin(reading.closed, 10_000, 'the reading stream ends');
      assert.match(reading.text(), /\r\n0\r\n\r\n$/, 'a reading stream gets a clean end');
      assert.equal(h.hub.size, 0);
      // the stalled reader, still not reading, does not hold the server's close
      await settlesWithin(serverClosed, 10_000, 'the server closes with a stalled reader connected');
      stalled.socket.resume();
      await settlesWithin(stalled.closed, 10_000, 'the stalled stream sees its connection closed');

      const another = await listening(h.hub);
      const late = await rawStream((another.address() as AddressInfo).port);
      await settlesWithin(late.closed, 10_000, 'the refused stream is answered');
      assert.match(late.text(), /^HTTP\/1\.1 429 [^]*\r\nshutting_down\r\n/);
      another.close();
    });
  });

  describe('per-address bound', () => {
    let h: Awaited<ReturnType<typeof hubServer>>;
    before(async () => {
      h = await hubServer({ perAddress: 2 });
    });
    after(() => h.server.close());

    it('refuses a third stream from one address while another address still gets one', async () => {
      const a = await rawStream(h.port);
      const b = await rawStream(h.port);
      await eventually('two streams open', async () => h.hub.size === 2);
      const third = await rawStream(h.port);
      await eventually('the third is answered', async () => third.text().includes('per_address'));
      assert.match(third.text(), /^HTTP\/1\.1 429 /);
      third.socket.destroy();
      // another source address: 127.0.0.2 is loopback too
      const other = await new Promise<RawStream>((resolve, reject) => {
        const socket = connect({ port: h.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
        let received = '';
        socket.setEncoding('utf8');
        socket.on('data', (d: string) => (received += d));
        socket.once('error', reject);
        socket.once('connect', () => {
          socket.write('GET / HTTP/1.1\r\nHost: test\r\n\r\n');
          resolve({ socket, text: () => received, closed: new Promise((done) => socket.once('close', () => done())) });
        });
      });
      await eventually('a stream from another address', async () => other.text().startsWith('HTTP/1.1 200 '));
      for (const s of [a, b, other]) s.socket.destroy();
      await eventually('all closed', async () => h.hub.size === 0);
    });

    it('counts an IPv4-mapped address as IPv4 and an IPv6 host by its /64, never by a header', () => {
      assert.equal(sourceOf('::ffff:10.1.2.3'), '10.1.2.3');
      assert.equal(sourceOf('10.1.2.3'), '10.1.2.3');
      assert.equal(sourceOf('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
      assert.equal(sourceOf('2001:db8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64');
      assert.equal(sourceOf('2001:0DB8:0001:0002::9'), '2001:db8:1:2::/64');
      assert.notEqual(sourceOf('2001:db8:1:3::1'), sourceOf('2001:db8:1:2::1'));
      assert.equal(sourceOf('::1'), '0:0:0:0::/64');
      assert.equal(sourceOf('fe80::1%eth0'), 'fe80:0:0:0::/64');
      assert.equal(sourceOf('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64');
      assert.equal(sourceOf(undefined), 'unknown');
    });
  });
});
