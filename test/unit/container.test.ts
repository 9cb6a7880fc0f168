// A guard, not a proof (there is no container engine in the test environment): the Dockerfile runs
// Sigil as an unprivileged user that owns the directories it writes, and docker-compose.yml keeps the
// KEK and the admin key in separate volumes, each mounted into one container only.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../support/server.js';

/** Dockerfile instructions, continuation lines joined, comments dropped. */
async function dockerfile(): Promise<Array<{ op: string; args: string }>> {
  const text = (await readFile(path.join(ROOT, 'Dockerfile'), 'utf8')).replace(/\\\n/g, ' ');
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).map((l) => {
    const [op, ...rest] = l.split(/\s+/);
    return { op: op!.toUpperCase(), args: rest.join(' ') };
  });
}

/** The `volumes:` entries of each service in docker-compose.yml (this file's own layout: two-space indents). */
async function composeVolumes(): Promise<Map<string, string[]>> {
  const lines = (await readFile(path.join(ROOT, 'docker-compose.yml'), 'utf8')).split('\n');
  const services = new Map<string, string[]>();
  let section = '';
  let service = '';
  let inVolumes = false;
  for (const line of lines) {
    if (/^\S/.test(line)) section = line.replace(/:.*/, '');
    if (section !== 'services') continue;
    const svc = /^ {2}([\w-]+):\s*$/.exec(line);
    if (svc) {
      service = svc[1]!;
      services.set(service, []);
      inVolumes = false;
      continue;
    }
    if (/^ {4}\S/.test(line)) inVolumes = /^ {4}volumes:/.test(line);
    const entry = /^ {6}- (\S+)/.exec(line);
    if (inVolumes && entry) services.get(service)!.push(entry[1]!.split(':')[0]!);
  }
  return services;
}

describe('container files (guard)', () => {
  it('the Dockerfile switches to an unprivileged user after its last RUN, owning the directories Sigil writes', async () => {
    const ins = await dockerfile();
    const users = ins.map((x, i) => ({ ...x, i })).filter((x) => x.op === 'USER');
    assert.ok(users.length, 'a USER instruction');
    const last = users.at(-1)!;
    assert.doesNotMatch(last.args, /^(root|0)(:|$)/, `USER ${last.args} is root`);
    const lastRun = ins.map((x) => x.op).lastIndexOf('RUN');
    assert.ok(last.i > lastRun, 'USER comes after every RUN (which install as root)');
    const uid = last.args.split(':')[0]!;
    const chown = ins.find((x) => x.op === 'RUN' && /chown/.test(x.args));
    assert.ok(chown && chown.args.includes(`chown ${uid}:`) && /\/app\/keys/.test(chown.args) && /\/app\/data/.test(chown.args), 'keys/ and data/ owned by that user');
    assert.match(chown!.args, /chmod 700 .*\/app\/keys/);
    const cmd = ins.filter((x) => x.op === 'CMD').at(-1);
    assert.ok(cmd && !/npm/.test(cmd.args), 'CMD runs node directly (npm start would recompile into a directory this user cannot write)');
  });

  it('docker-compose.yml: the KEK volume only in the server, the admin key volume only in the CLI container', async () => {
    const volumes = await composeVolumes();
    const server = volumes.get('sigil');
    const cli = volumes.get('sigil-cli');
    assert.ok(server && cli, [...volumes.keys()].join(', '));
    assert.deepEqual(server, ['sigil-kek']);
    assert.deepEqual(cli, ['sigil-admin-key']);
    for (const [name, mounted] of volumes) {
      if (name !== 'sigil') assert.ok(!mounted.includes('sigil-kek'), `${name} mounts the KEK`);
      if (name !== 'sigil-cli') assert.ok(!mounted.includes('sigil-admin-key'), `${name} mounts the admin key`);
    }
    const text = await readFile(path.join(ROOT, 'docker-compose.yml'), 'utf8');
    assert.match(text, /network_mode: "service:sigil"/, 'the CLI shares the server\'s loopback, which `sigil init` requires');
  });
});
