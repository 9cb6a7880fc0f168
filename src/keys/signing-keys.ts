// Sigil's signing keys in Postgres: generated on first start, stored encrypted with the KEK, shared
// by every instance. The private half leaves this module only decrypted in memory, for signing.
import { randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { SigningAlg } from './algorithms.js';
import { publicPart } from './algorithms.js';
import type { Db, Queryable } from '../storage/db.js';
import { decryptJwk, encryptJwk } from './key-encryption.js';

const KEY_CREATION_LOCK = 0x5161_1002;

export interface StoredKey {
  kid: string;
  alg: SigningAlg;
  privateJwk: JWK;
  publicJwk: JWK;
  createdAt: Date;
  /** when it starts signing; its predecessor starts retiring then */
  activateAt: Date;
}

interface KeyRow {
  kid: string;
  alg: SigningAlg;
  private_jwk: unknown;
  public_jwk: JWK;
  created_at: Date;
  activate_at: Date;
}

async function newKeyPair(alg: SigningAlg): Promise<{ kid: string; privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey } = await generateKeyPair(alg, {
    extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}), ...(alg === 'PS256' ? { modulusLength: 3072 } : {}),
  });
  const jwk = await exportJWK(privateKey);
  const pub = publicPart(jwk);
  // thumbprint-derived kid: stable, unique, and reveals nothing
  const kid = (await calculateJwkThumbprint(pub)).slice(0, 16);
  const meta = { kid, alg, use: 'sig' };
  return { kid, privateJwk: { ...jwk, ...meta }, publicJwk: { ...pub, ...meta } };
}

type KeyPair = Awaited<ReturnType<typeof newKeyPair>>;

async function insertKey(q: Queryable, kek: Buffer, alg: SigningAlg, k: KeyPair, activateAt: Date | 'now'): Promise<string> {
  await q.query(
    `INSERT INTO signing_keys (kid, alg, state, private_jwk, public_jwk, activate_at, activated_at)
     VALUES ($1, $2, 'next', $3, $4, coalesce($5, now()), NULL)`,
    [k.kid, alg, JSON.stringify(encryptJwk(kek, k.privateJwk, k.kid)), JSON.stringify(k.publicJwk), activateAt === 'now' ? null : activateAt],
  );
  return k.kid;
}

/** Every key that may still matter (retired keys are removed by `pruneRetiredKeys`), oldest first. */
export async function readKeys(db: Queryable, kek: Buffer): Promise<StoredKey[]> {
  const r = await db.query<KeyRow>('SELECT kid, alg, private_jwk, public_jwk, created_at, activate_at FROM signing_keys ORDER BY activate_at, kid');
  return r.rows.map((row) => ({
    kid: row.kid,
    alg: row.alg,
    privateJwk: decryptJwk(kek, row.private_jwk, row.kid),
    publicJwk: row.public_jwk,
    createdAt: new Date(row.created_at),
    activateAt: new Date(row.activate_at),
  }));
}

/** The first key, active at once; created once even when instances start together. */
export async function ensureInitialKey(db: Db, alg: SigningAlg, kek: Buffer): Promise<void> {
  const any = await db.query('SELECT 1 FROM signing_keys LIMIT 1');
  if (any.rowCount > 0) return;
  // generated before the transaction: a pooled connection is not held while an RSA key is made
  const k = await newKeyPair(alg);
  await db.lockedTransaction(KEY_CREATION_LOCK, async (q) => {
    if ((await q.query('SELECT 1 FROM signing_keys LIMIT 1')).rowCount > 0) return;
    await insertKey(q, kek, alg, k, 'now');
  });
}

/** Stage a successor that starts signing at `activateAt`; refused (undefined) while one is staged. */
export async function stageNextKey(db: Db, alg: SigningAlg, kek: Buffer, activateAt: Date): Promise<string | undefined> {
  const k = await newKeyPair(alg);
  return db.lockedTransaction(KEY_CREATION_LOCK, async (q) => {
    if ((await q.query('SELECT 1 FROM signing_keys WHERE activate_at > now()')).rowCount > 0) return undefined;
    return insertKey(q, kek, alg, k, activateAt);
  });
}

export async function deleteKeys(db: Db, kids: string[]): Promise<void> {
  if (kids.length) await db.query('DELETE FROM signing_keys WHERE kid = ANY($1::text[])', [kids]);
}

/** Convenience for tests and tools: the keys after making sure the first exists. */
export async function loadSigningKeys(db: Db, alg: SigningAlg, kek: Buffer): Promise<StoredKey[]> {
  await ensureInitialKey(db, alg, kek);
  return readKeys(db, kek);
}

/** A random secret shared by every instance (created by whichever instance asks first). */
export async function sharedSecret(db: Db, name: string, bytes = 32): Promise<Buffer> {
  await db.query('INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, randomBytes(bytes)]);
  const r = await db.query<{ value: Buffer | Uint8Array }>('SELECT value FROM server_secrets WHERE name = $1', [name]);
  return Buffer.from(r.rows[0]!.value);
}
