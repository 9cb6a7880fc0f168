// Files that hold a secret key (the key-encryption key, the admin's private key). Whoever can read one
// holds the key, so, as ssh does for private keys, a file its group or others can access is refused.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/** The file's mode lets its group or others read, write or execute it. */
export class ExposedSecretFile extends Error {
  override name = 'ExposedSecretFile';
  constructor(readonly file: string, readonly mode: number, what: string) {
    const octal = mode.toString(8).padStart(4, '0');
    super(`${file} has mode ${octal}: its group or other users can access ${what}, so it is not used. `
      + `Run \`chmod 600 ${file}\` (if someone else may have read it, treat the key as exposed)`);
  }
}

/**
 * The text of `file`, checked on the open file itself (no window between check and read) to be a
 * regular file with no group or other permission bits. `what` names the secret in the refusal. Errors
 * of the file system (ENOENT, EACCES...) are thrown as they are.
 */
export async function readSecretFile(file: string, what: string): Promise<string> {
  // non-blocking: a FIFO put in the key's place must not hang the open
  const handle = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new Error(`${file} is not a regular file`);
    // Windows has no POSIX mode bits to check
    if (process.platform !== 'win32' && stats.mode & 0o077) throw new ExposedSecretFile(file, stats.mode & 0o777, what);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}
