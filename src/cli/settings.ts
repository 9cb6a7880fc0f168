// The CLI's settings (CONTRACT.md, environment): where the server is, whether plain http to it is
// allowed, and where the admin key lives.
import path from 'node:path';
import { redactUrl } from '../redact-url.js';
import type { CliIo } from './command.js';
import { UsageError } from './errors.js';

export const DEFAULT_SIGIL_URL = 'http://localhost:3000';
export const ADMIN_KEY_FILE = 'admin.private.jwk.json';
export const INSECURE_HTTP_SWITCH = 'SIGIL_INSECURE_HTTP';

/** localhost, 127.0.0.0/8 and ::1, as the URL parser writes them (it turns 127.1 or 0x7f000001 into 127.0.0.1). */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** SIGIL_INSECURE_HTTP: only the exact words true and false, so a typo never turns a check off. */
function insecureHttpAllowed(io: CliIo): boolean {
  const raw = io.env[INSECURE_HTTP_SWITCH];
  if (raw === undefined || raw === '' || raw === 'false') return false;
  if (raw === 'true') return true;
  throw new UsageError(`${INSECURE_HTTP_SWITCH} must be true or false, got ${JSON.stringify(raw)}`, 'sigil --help');
}

/**
 * SIGIL_URL as an origin: requests go to this instance, whatever the shared ISSUER is. Plain http is
 * allowed to a loopback host only: a DPoP proof does not cover the request body, so anyone on the path
 * of a plain-http admin call could rewrite it (a client's keys, a registration token's scope).
 */
export function sigilUrl(io: CliIo): URL {
  const raw = io.env.SIGIL_URL || DEFAULT_SIGIL_URL;
  const url = URL.parse(raw);
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new UsageError(`SIGIL_URL must be an http(s) URL such as ${DEFAULT_SIGIL_URL}, got ${JSON.stringify(redactUrl(raw))}`, 'sigil --help');
  }
  if (url.username || url.password) {
    throw new UsageError(`SIGIL_URL must not carry a user name or password (${redactUrl(raw)}): the CLI authenticates with the admin key`, 'sigil --help');
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    if (!insecureHttpAllowed(io)) {
      throw new UsageError(`SIGIL_URL ${url.origin} is plain http to a host that is not loopback: admin requests could be read and changed on the way. `
        + `Use https, or set ${INSECURE_HTTP_SWITCH}=true to allow it anyway (a test network only)`, 'sigil --help');
    }
    io.warn(`warning: ${INSECURE_HTTP_SWITCH}=true: sending admin requests over plain http to ${url.origin}; anyone on the path can read and change them`);
  }
  return url;
}

/** SIGIL_URL for messages: its origin, or its redacted form when it is no usable URL. */
export function sigilUrlForDisplay(io: CliIo): string {
  const raw = io.env.SIGIL_URL || DEFAULT_SIGIL_URL;
  const origin = URL.parse(raw)?.origin;
  return origin && origin !== 'null' ? origin : redactUrl(raw);
}

export function keysDir(io: CliIo): string {
  return path.resolve(io.cwd, io.env.SIGIL_KEYS_DIR || './keys');
}

export function adminKeyFile(io: CliIo): string {
  return path.join(keysDir(io), ADMIN_KEY_FILE);
}
