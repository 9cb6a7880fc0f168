// The harness's own promises: a program that cannot listen on port 0 is started again on another
// port when its port was taken first, and only then; the waits fail with what they last saw.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startRedisServer } from '../support/redis-server.js';
import { onAFreePort, PortTaken } from '../support/server.js';
import { eventually, observedWithin, settlesWithin } from '../support/wait.js';

describe('test harness: ports for programs that cannot listen on 0', () => {
  let taken: Server;
  let takenPort: number;
  before(async () => {
    taken = createServer((socket) => socket.destroy()); // whatever holds the port: it answers no PING
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    takenPort = (taken.address() as { port: number }).port;
  });
  after(() => new Promise<void>((resolve) => taken.close(() => resolve())));

  it('onAFreePort tries another port after PortTaken, and gives up after the last attempt', async () => {
    const tried: number[] = [];
    const port = await onAFreePort(async (p) => {
      tried.push(p);
      if (tried.length < 3) throw new PortTaken(`port ${p} taken`);
      return p;
    });
    assert.equal(tried.length, 3);
    assert.equal(port, tried[2]);
    let attempts = 0;
    await assert.rejects(onAFreePort(async () => {
      attempts++;
      throw new PortTaken('always taken');
    }, 4), PortTaken);
    assert.equal(attempts, 4);
  });

  it('onAFreePort does not retry any other failure', async () => {
    let attempts = 0;
    await assert.rejects(onAFreePort(async () => {
      attempts++;
      throw new Error('redis-server is not installed');
    }), /not installed/);
    assert.equal(attempts, 1);
  });

  it('a redis-server told to use a taken port fails with PortTaken (which onAFreePort retries)', async () => {
    await assert.rejects(startRedisServer({ port: takenPort }), PortTaken);
  });
});

describe('test harness: waits', () => {
  it('eventually returns the first answer that is not undefined/false, and names the last one on timeout', async () => {
    let n = 0;
    assert.equal(await eventually('the third poll', async () => (++n >= 3 ? n : undefined), { every: 1 }), 3);
    await assert.rejects(eventually('never', async () => {
      throw new Error('still starting');
    }, { timeout: 50, every: 10 }), /waiting for never; last: error: still starting/);
  });

  it('observedWithin fails a change seen only after its bound', async () => {
    const t0 = Date.now() - 50;
    await assert.rejects(observedWithin('a late change', t0, 10, async () => true), /observed only after \d+ ms \(bound 10 ms\)/);
    assert.ok((await observedWithin('a prompt change', Date.now(), 1000, async () => true)) <= 1000);
  });

  it('settlesWithin fails a hang and leaves no timer behind when the promise settles', async () => {
    await assert.rejects(settlesWithin(new Promise(() => {}), 20, 'a hang'), /a hang did not settle within 20 ms/);
    assert.equal(await settlesWithin(Promise.resolve(7), 60_000, 'quick'), 7);
    // a 60 s guard still armed here would keep this file's process alive: the run would time out
  });
});
