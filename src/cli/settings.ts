// The CLI's two settings (CONTRACT.md, environment): where the server is and where the admin key lives.
import path from 'node:path';
import type { CliIo } from './command.js';
import { UsageError } from './errors.js';

export const DEFAULT_SIGIL_URL = 'http://localhost:3000';
export const ADMIN_KEY_FILE = 'admin.private.jwk.json';

/** SIGIL_URL as an origin: requests go to this instance, whatever the shared ISSUER is. */
export function sigilUrl(io: CliIo): URL {
  const raw = io.env.SIGIL_URL || DEFAULT_SIGIL_URL;
  const url = URL.parse(raw);
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new UsageError(`SIGIL_URL must be an http(s) URL such as ${DEFAULT_SIGIL_URL}, got ${JSON.stringify(raw)}`, 'sigil --help');
  }
  return url;
}

export function keysDir(io: CliIo): string {
  return path.resolve(io.cwd, io.env.SIGIL_KEYS_DIR || './keys');
}

export function adminKeyFile(io: CliIo): string {
  return path.join(keysDir(io), ADMIN_KEY_FILE);
}
