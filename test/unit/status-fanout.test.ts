// The status-list fan-out alone: who hears of a changed list, and who is told over the bus (once).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StatusListFanOut } from '../../src/revocation/status-fanout.js';

/** an in-memory bus that records what was published and lets the test deliver messages and reconnects */
function fakeBus() {
  const handlers = new Map<string, (message: string) => void>();
  const reconnects: Array<() => void> = [];
  const published: Array<[string, string]> = [];
  return {
    published,
    deliver: (channel: string, message: string) => handlers.get(channel)?.(message),
    reconnect: () => reconnects.forEach((h) => h()),
    bus: {
      async publish(channel: string, message: string) {
        published.push([channel, message]);
      },
      subscribe(channel: string, handler: (message: string) => void) {
        handlers.set(channel, handler);
      },
      onReconnect(handler: () => void) {
        reconnects.push(handler);
      },
    },
  };
}

function fanOutWith(reconcile: () => Promise<string[]> = async () => []) {
  const bus = fakeBus();
  const heard: Array<string[] | undefined> = [];
  // a timer that never fires during the test: passes are run by hand
  const fanOut = new StatusListFanOut({ bus: bus.bus, local: (lists) => heard.push(lists), reconcile, reconcileEveryMs: 3_600_000 });
  fanOut.start();
  return { fanOut, bus, heard };
}

describe('status-list fan-out', () => {
  it('applies what another instance announces, and drops everything on a malformed message or a reconnect', () => {
    const { fanOut, bus, heard } = fanOutWith();
    bus.deliver('status-lists', JSON.stringify(['1-0', '1-1']));
    bus.deliver('status-lists', '{not json');
    bus.reconnect();
    fanOut.stop();
    assert.deepEqual(heard, [['1-0', '1-1'], undefined, undefined]);
    assert.deepEqual(bus.published, []);
  });

  it('tells the other instances of a change only this one saw, and not of one every instance sees itself', () => {
    const { fanOut, bus, heard } = fanOutWith();
    fanOut.changedHere(['2-0']);
    fanOut.changedForAll(['3-0']);
    fanOut.stop();
    assert.deepEqual(heard, [['2-0'], ['3-0']]);
    assert.deepEqual(bus.published, [['status-lists', JSON.stringify(['3-0'])]]);
  });

  it('announces what a reconciliation pass changed, here and to the others; nothing when it changed nothing or failed', async () => {
    const answers: Array<() => Promise<string[]>> = [async () => ['4-0'], async () => [], async () => Promise.reject(new Error('db down'))];
    const { fanOut, bus, heard } = fanOutWith(() => answers.shift()!());
    for (let i = 0; i < 3; i++) await fanOut.reconcileOnce();
    fanOut.stop();
    assert.deepEqual(heard, [['4-0']]);
    assert.deepEqual(bus.published, [['status-lists', JSON.stringify(['4-0'])]]);
  });
});
