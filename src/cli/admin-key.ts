// The admin private key on disk: read it, and write a new one so that it is never half-written,
// never readable by others, and never left behind for a key the server does not know.
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { JWK } from 'jose';
import { keyPairFromPrivateJwk, type SigningKeyPair } from '../client/oauth-client.js';
import { ExposedSecretFile, readSecretFile } from '../keys/secret-file.js';
import { CliError } from './errors.js';

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/**
 * The admin key in `file`, or undefined when there is no such file. Refused when its group or others
 * can access it: whoever can read it administers the server. Never echoes the key material.
 */
export async function readAdminKey(file: string): Promise<SigningKeyPair | undefined> {
  let text: string;
  try {
    text = await readSecretFile(file, 'the admin key');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    if (err instanceof ExposedSecretFile) throw new CliError(err.message);
    throw new CliError(`cannot read the admin key ${file}: ${errorCode(err) ?? (err as Error).message}`);
  }
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch {
    throw new CliError(`${file} is not a JSON private key (JWK)`);
  }
  try {
    return await keyPairFromPrivateJwk(jwk);
  } catch (err) {
    throw new CliError(`${file} does not hold a usable private key: ${(err as Error).message}`);
  }
}

export interface StagedKeyFile {
  /** where the key sits until commit */
  tempFile: string;
  /** move it to its final name (atomic rename on the same filesystem) */
  commit(): Promise<void>;
  /** remove it: the server did not take the key */
  discard(): Promise<void>;
}

/**
 * Write the key to a temporary file next to `file` (mode 0600, flushed to disk) before the server is
 * asked, so an unwritable directory fails before the server knows the key; the caller commits once the
 * server accepted it, or discards it.
 */
export async function stageKeyFile(file: string, privateJwk: JWK): Promise<StagedKeyFile> {
  const dir = path.dirname(file);
  const tempFile = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  // the first directory this call created, if any: removed again when the key is discarded
  let createdDir: string | undefined;
  const discard = async () => {
    await rm(tempFile, { force: true });
    // only directories left empty: another run may be using them by now
    for (let d = dir; createdDir && d.startsWith(createdDir); d = path.dirname(d)) {
      if (!(await rmdir(d).then(() => true, () => false))) break;
    }
  };
  try {
    createdDir = await mkdir(dir, { recursive: true, mode: 0o700 });
    const handle = await open(tempFile, 'wx', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(privateJwk, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    await discard();
    throw new CliError(`cannot write the admin key in ${dir}: ${errorCode(err) ?? (err as Error).message}`);
  }
  return {
    tempFile,
    commit: () => rename(tempFile, file),
    discard,
  };
}
