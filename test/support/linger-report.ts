// Loaded into every test file's process by `npm test` (--import). There is no --test-force-exit: a
// file whose process outlives its tests by a handle left open (a server, socket, timer, child
// process) fails the run once --test-timeout passes. So that the failure names its cause, this
// prints what still holds the process a few seconds after the file's last test; its own timer is
// unref'd and never keeps a process alive.
import { after } from 'node:test';

const GRACE_MS = 5000;

interface Handle {
  constructor?: { name?: string };
  pid?: number;
  spawnargs?: string[];
  remoteAddress?: string;
  remotePort?: number;
  localPort?: number;
  address?: () => unknown;
}

function describeHandle(h: Handle): string {
  const kind = h.constructor?.name ?? 'unknown';
  if (kind === 'ChildProcess') return `ChildProcess pid ${h.pid}: ${(h.spawnargs ?? []).join(' ').slice(0, 160)}`;
  if (kind === 'Socket') return `Socket local :${h.localPort ?? '?'} remote ${h.remoteAddress ?? '?'}:${h.remotePort ?? '?'}`;
  if (kind === 'Server') return `Server ${JSON.stringify(h.address?.())}`;
  return kind;
}

after(() => {
  setTimeout(() => {
    const handles = (process as unknown as { _getActiveHandles(): Handle[] })._getActiveHandles().map(describeHandle);
    process.stderr.write(`test process ${process.pid} still running ${GRACE_MS} ms after its last test; held by ${JSON.stringify(process.getActiveResourcesInfo())}: ${JSON.stringify(handles)}\n`);
  }, GRACE_MS).unref();
});
