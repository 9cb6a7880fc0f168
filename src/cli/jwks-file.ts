// Reading a client's public JWKS from a file, and refusing it locally (exit 2) before anything is sent:
// a private key in the file must never leave the machine, and a typo is cheaper to report here.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { JWK } from 'jose';
import { jwksProblems } from '../clients/client-keys.js';
import { UsageError } from './errors.js';

/** Larger than any JWKS of at most 10 keys; stops an accidental multi-gigabyte read. */
const MAX_BYTES = 256 * 1024;

export async function readJwksFile(file: string, cwd: string, option = '--jwks-file'): Promise<{ keys: JWK[] }> {
  const full = path.resolve(cwd, file);
  let text: string;
  try {
    text = await readFile(full, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (code ?? (err as Error).message);
    throw new UsageError(`${option} ${file}: cannot read it (${why})`);
  }
  if (text.length > MAX_BYTES) throw new UsageError(`${option} ${file}: too large to be a JWKS`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${option} ${file} is not valid JSON (${(err as Error).message})`);
  }
  // A lone JWK (often the private key file itself) is the likeliest mistake: say exactly that.
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed) && 'kty' in parsed && !('keys' in parsed)) {
    const problems = jwksProblems({ keys: [parsed] }).map((p) => p.replace(/^key 0 /, 'it '));
    throw new UsageError(`${option} ${file} holds a single JWK, not a JWKS ({"keys": [...]})${problems.length ? `; also, ${problems.join('; ')}` : ''}`);
  }
  const problems = jwksProblems(parsed);
  if (problems.length) throw new UsageError(`${option} ${file} is not an acceptable public JWKS: ${problems.join('; ')}`);
  return parsed as { keys: JWK[] };
}
