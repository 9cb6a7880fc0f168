// Signing keys are encrypted at rest (AES-256-GCM) with a key-encryption key (KEK) from
// configuration, so a database dump alone yields no usable key.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import type { JWK } from 'jose';
import type { Logger } from '../log.js';
import { ExposedSecretFile, readSecretFile } from './secret-file.js';

export interface EncryptedJwk {
  v: 1;
  alg: 'A256GCM';
  iv: string;
  tag: string;
  ct: string;
}

export class KeyDecryptionError extends Error {}

function parseKek(raw: string, where: string): Buffer {
  const trimmed = raw.trim();
  const bytes = /^[0-9a-f]{64}$/i.test(trimmed) ? Buffer.from(trimmed, 'hex') : Buffer.from(trimmed, 'base64url');
  if (bytes.length !== 32) throw new Error(`${where} must hold 32 bytes (64 hex characters or base64url), got ${bytes.length}`);
  return bytes;
}

/**
 * The KEK: SIGIL_KEK, else the file `kek` in the keys directory. When neither exists one is generated
 * into that file (with a warning): right for the embedded default and for a first try, but a
 * production deployment should give every instance the same SIGIL_KEK from its secret store.
 */
export async function loadKek(opts: { kek?: string; keysDir: string }, log: Logger): Promise<Buffer> {
  if (opts.kek) return parseKek(opts.kek, 'SIGIL_KEK');
  const file = path.join(opts.keysDir, 'kek');
  try {
    return parseKek(await readKekFile(file), file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // only its owner may list or enter the directory that holds the KEK (and, by default, the admin key)
  await mkdir(opts.keysDir, { recursive: true, mode: 0o700 });
  try {
    // exclusive create: two instances starting together end up with the same file
    const handle = await open(file, 'wx', 0o600);
    await handle.writeFile(randomBytes(32).toString('hex'));
    await handle.close();
    log.warn({ file }, 'no SIGIL_KEK: generated a key-encryption key file; give every instance the same SIGIL_KEK in production');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return parseKek(await readKekFile(file), file);
}

/** The KEK file, refused when its group or others can access it (whoever reads it can decrypt the signing keys). */
async function readKekFile(file: string): Promise<string> {
  try {
    return await readSecretFile(file, 'the key-encryption key');
  } catch (err) {
    if (err instanceof ExposedSecretFile) throw new Error(`${err.message}; or give the key in SIGIL_KEK instead`);
    throw err;
  }
}

export function encryptJwk(kek: Buffer, jwk: JWK, kid: string): EncryptedJwk {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, iv);
  cipher.setAAD(Buffer.from(kid));
  const ct = Buffer.concat([cipher.update(JSON.stringify(jwk), 'utf8'), cipher.final()]);
  return { v: 1, alg: 'A256GCM', iv: iv.toString('base64url'), tag: cipher.getAuthTag().toString('base64url'), ct: ct.toString('base64url') };
}

export function decryptJwk(kek: Buffer, stored: unknown, kid: string): JWK {
  const e = stored as Partial<EncryptedJwk>;
  if (e?.v !== 1 || typeof e.iv !== 'string' || typeof e.tag !== 'string' || typeof e.ct !== 'string') {
    throw new KeyDecryptionError(`signing key ${kid} is not stored encrypted`);
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(e.iv, 'base64url'));
    decipher.setAAD(Buffer.from(kid));
    decipher.setAuthTag(Buffer.from(e.tag, 'base64url'));
    const pt = Buffer.concat([decipher.update(Buffer.from(e.ct, 'base64url')), decipher.final()]);
    return JSON.parse(pt.toString('utf8')) as JWK;
  } catch {
    throw new KeyDecryptionError(`signing key ${kid} cannot be decrypted with this key-encryption key (SIGIL_KEK differs between instances?)`);
  }
}
