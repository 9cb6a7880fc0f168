// The HTTP limits on Sigil's TLS listener (src/server/http-listener.ts with TLS credentials): the
// headers timeout and Sigil's answer to it (answerEveryRequest), a bounded handshake, the connection
// ceiling, and malformed requests answered as on plain HTTP.
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { HttpLimits } from '../../src/config.js';
import { answerEveryRequest } from '../../src/server/http-connections.js';
import { closeServer, createHttpServer, listen } from '../../src/server/http-listener.js';
import { mintCa, mintLeaf } from '../support/x509.js';

const LIMITS: HttpLimits = { headersTimeoutMs: 300, requestTimeoutMs: 600, keepAliveTimeoutMs: 1000, maxConnections: 3 };

describe('the TLS listener keeps the HTTP limits', () => {
  const ca = mintCa('/CN=listener CA');
  const cert = mintLeaf(ca, { subject: '/CN=localhost', san: ['IP:127.0.0.1'] });
  let server: Server;
  let port: number;
  let drops = 0;
  const open: TLSSocket[] = [];

  before(async () => {
    server = createHttpServer((_req, res) => res.end('ok'), LIMITS, () => drops++, { cert: cert.cert, key: cert.key });
    answerEveryRequest(server);
    port = await listen(server, 0, '127.0.0.1');
  });
  after(async () => {
    for (const s of open) s.destroy();
    await closeServer(server);
  });

  /** a TLS connection, its received text, and when it closed */
  function tlsClient() {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.cert, servername: undefined });
    open.push(socket);
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (received += d));
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const secure = new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
    return { socket, closed, secure, received: () => received };
  }

  it('answers a request over TLS', async () => {
    const c = tlsClient();
    await c.secure;
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await c.closed;
    assert.match(c.received(), /^HTTP\/1\.1 200[\s\S]*ok$/);
  });

  it('answers headers that never finish with 408 (RFC 6749 JSON) and closes', async () => {
    const c = tlsClient();
    await c.secure;
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
    await c.closed;
    assert.match(c.received(), /^HTTP\/1\.1 408[\s\S]*"error":"invalid_request"/);
  });

  it('answers a malformed request with 400 JSON as plain HTTP does', async () => {
    const c = tlsClient();
    await c.secure;
    c.socket.write('\u0000garbage\r\n\r\n');
    await c.closed;
    assert.match(c.received(), /^HTTP\/1\.1 400[\s\S]*not valid HTTP/);
  });

  it('closes a connection that never starts its handshake', async () => {
    const socket = tcpConnect(port, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
  });

  it('drops connections beyond HTTP_MAX_CONNECTIONS at once', async () => {
    const held = [tlsClient(), tlsClient(), tlsClient()];
    await Promise.all(held.map((c) => c.secure));
    const extra = tlsClient();
    await extra.closed;
    assert.ok(drops >= 1, 'the drop was counted');
    for (const c of held) c.socket.destroy();
  });
});
