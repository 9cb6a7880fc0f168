// answerEveryRequest (src/server/http-connections.ts) on a bare node:http server: what Node's HTTP layer
// refuses is answered after every complete request before it, in order, however long those take.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { answerEveryRequest } from '../../src/server/http-connections.js';

describe('answerEveryRequest', () => {
  let server: Server;
  let port: number;
  let release: () => void = () => {};
  let slowArrived: () => void = () => {};
  const slowSeen = new Promise<void>((resolve) => (slowArrived = resolve));

  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/slow') {
        // answered only when the test says so: long after the first answer finished
        slowArrived();
        release = () => res.end('slow');
        return;
      }
      res.end('fast');
    });
    answerEveryRequest(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('a malformed request pipelined after a slow one is refused only after the slow one is answered', async () => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (received += d));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET /fast HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\n\r\n\u0000garbage\r\n\r\n');
    await slowSeen;
    // the fast answer may be out already; the refusal must not be
    await new Promise((r) => setImmediate(r));
    assert.doesNotMatch(received, /invalid_request/, 'no refusal before the slow answer');
    release();
    await closed;
    const statuses = [...received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [200, 200, 400], received);
    assert.ok(received.indexOf('slow') < received.indexOf('invalid_request'), 'the slow answer comes before the refusal');
  });
});
