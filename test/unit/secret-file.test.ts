// Key files on disk (issue 10, finding 13): the KEK's directory is created 0700, and a KEK file (or any
// secret file, the CLI's admin key included: test/cli/usage.test.ts) that its group or others can access
// is refused with how to fix it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadKek } from '../../src/keys/key-encryption.js';
import { ExposedSecretFile, readSecretFile } from '../../src/keys/secret-file.js';
import { createLogger } from '../../src/log.js';

const log = createLogger('silent');
const mode = async (p: string) => (await stat(p)).mode & 0o777;

describe('secret files: the KEK and the admin key', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'sigil-secret-file-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a generated KEK lives in a new 0700 directory, in a 0600 file, and is read back the same', async () => {
    const keysDir = path.join(root, 'fresh', 'keys');
    const kek = await loadKek({ keysDir }, log);
    assert.equal(kek.length, 32);
    assert.equal(await mode(keysDir), 0o700, 'keys directory');
    assert.equal(await mode(path.join(root, 'fresh')), 0o700, 'every directory it had to create');
    assert.equal(await mode(path.join(keysDir, 'kek')), 0o600, 'kek file');
    assert.deepEqual(await loadKek({ keysDir }, log), kek);
  });

  it('refuses a KEK file its group or others can access, saying how to fix it; starts again once fixed', async () => {
    const keysDir = path.join(root, 'exposed');
    await mkdir(keysDir, { mode: 0o700 });
    const file = path.join(keysDir, 'kek');
    const hex = randomBytes(32).toString('hex');
    await writeFile(file, hex, { mode: 0o600 });
    for (const bad of [0o644, 0o640, 0o604, 0o620, 0o602, 0o601, 0o610]) {
      await chmod(file, bad);
      await assert.rejects(loadKek({ keysDir }, log), (err: Error) => {
        assert.match(err.message, new RegExp(`kek has mode 0${bad.toString(8)}: its group or other users can access the key-encryption key, so it is not used\\. Run \`chmod 600 ${file.replace(/[.]/g, '\\.')}\`.*or give the key in SIGIL_KEK instead`));
        assert.ok(!err.message.includes(hex), 'the key is never echoed');
        return true;
      }, `mode ${bad.toString(8)}`);
    }
    for (const good of [0o600, 0o400]) {
      await chmod(file, good);
      assert.equal((await loadKek({ keysDir }, log)).toString('hex'), hex, `mode ${good.toString(8)}`);
    }
  });

  it('SIGIL_KEK is used as given, whatever lies in the keys directory', async () => {
    const keysDir = path.join(root, 'env');
    await mkdir(keysDir, { mode: 0o700 });
    await writeFile(path.join(keysDir, 'kek'), randomBytes(32).toString('hex'), { mode: 0o644 });
    const hex = randomBytes(32).toString('hex');
    assert.equal((await loadKek({ kek: hex, keysDir }, log)).toString('hex'), hex);
  });

  it('readSecretFile: ENOENT as it is, a directory refused, an exposed file named with its mode', async () => {
    await assert.rejects(readSecretFile(path.join(root, 'missing'), 'x'), { code: 'ENOENT' });
    await assert.rejects(readSecretFile(root, 'x'), /is not a regular file/);
    const file = path.join(root, 'secret');
    await writeFile(file, 'text', { mode: 0o600 });
    assert.equal(await readSecretFile(file, 'x'), 'text');
    await chmod(file, 0o666);
    await assert.rejects(readSecretFile(file, 'the thing'), (err: unknown) => err instanceof ExposedSecretFile && err.mode === 0o666 && /the thing/.test(err.message));
    assert.ok(existsSync(file));
  });
});
