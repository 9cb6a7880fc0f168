// Sigil's signing keys: generated on first start, kept in Postgres, shared by every instance.
// The private half leaves this module only as the JWKS handed to oidc-provider at construction.
import { randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { SigningAlg } from '../config.js';
import type { Db } from '../storage/db.js';

const KEY_CREATION_LOCK = 0x5161_1002;

export interface SigningKey {
  kid: string;
  alg: SigningAlg;
  state: 'next' | 'active' | 'retiring' | 'retired';
  publicJwk: JWK;
  createdAt: Date;
  activatedAt?: Date;
}

interface KeyRow {
  kid: string;
  alg: SigningAlg;
  state: SigningKey['state'];
  private_jwk: JWK;
  public_jwk: JWK;
  created_at: Date;
  activated_at: Date | null;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

export function publicPart(jwk: JWK): JWK {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(jwk)) if (!PRIVATE_MEMBERS.includes(k)) out[k] = v;
  return out as JWK;
}

async function newKey(alg: SigningAlg): Promise<{ kid: string; privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}), ...(alg === 'PS256' ? { modulusLength: 3072 } : {}) });
  const jwk = await exportJWK(privateKey);
  const pub = publicPart(jwk);
  // thumbprint-derived kid: stable, unique, and reveals nothing
  const kid = `${(await calculateJwkThumbprint(pub)).slice(0, 16)}`;
  const meta = { kid, alg, use: 'sig' };
  return { kid, privateJwk: { ...jwk, ...meta }, publicJwk: { ...pub, ...meta } };
}

export interface SigningKeys {
  /** private JWKS for oidc-provider (signing keys first) */
  privateJwks: { keys: JWK[] };
  /** what every verifier may use: active and retiring keys */
  keys: SigningKey[];
}

/** Load the signing keys, creating the first one if there is none (once, across racing instances). */
export async function loadSigningKeys(db: Db, alg: SigningAlg): Promise<SigningKeys> {
  const read = async () =>
    (await db.query<KeyRow>(
      `SELECT * FROM signing_keys WHERE state IN ('active', 'retiring', 'next')
       ORDER BY CASE state WHEN 'active' THEN 0 WHEN 'retiring' THEN 1 ELSE 2 END, activated_at DESC NULLS LAST`,
    )).rows;
  let rows = await read();
  if (!rows.some((r) => r.state === 'active')) {
    await db.withAdvisoryLock(KEY_CREATION_LOCK, async (q) => {
      const existing = await q.query("SELECT 1 FROM signing_keys WHERE state = 'active'");
      if (existing.rowCount > 0) return;
      const k = await newKey(alg);
      await q.query(
        `INSERT INTO signing_keys (kid, alg, state, private_jwk, public_jwk, activated_at) VALUES ($1, $2, 'active', $3, $4, now())`,
        [k.kid, alg, JSON.stringify(k.privateJwk), JSON.stringify(k.publicJwk)],
      );
    });
    rows = await read();
  }
  return {
    privateJwks: { keys: rows.filter((r) => r.state !== 'next').map((r) => r.private_jwk) },
    keys: rows.map((r) => ({
      kid: r.kid,
      alg: r.alg,
      state: r.state,
      publicJwk: r.public_jwk,
      createdAt: new Date(r.created_at),
      activatedAt: r.activated_at ? new Date(r.activated_at) : undefined,
    })),
  };
}

/** A random secret shared by every instance (created by whichever instance asks first). */
export async function sharedSecret(db: Db, name: string, bytes = 32): Promise<Buffer> {
  await db.query('INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, randomBytes(bytes)]);
  const r = await db.query<{ value: Buffer | Uint8Array }>('SELECT value FROM server_secrets WHERE name = $1', [name]);
  return Buffer.from(r.rows[0]!.value);
}
