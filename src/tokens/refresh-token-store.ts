// Refresh tokens, stored by SHA-256 only. consume() is the atomic "use once": of two concurrent
// uses exactly one gets the row back.
import { createHash, randomBytes } from 'node:crypto';
import type { Queryable } from '../storage/db.js';

export const REFRESH_TOKEN_PREFIX = 'srt_';

export interface RefreshTokenRecord {
  tokenHash: string;
  familyId: string;
  clientId: string;
  subject: string;
  subjectClientId: string;
  /** the token the family was exchanged from (null for families from before lineage was kept) */
  subjectJti: string | null;
  act: Record<string, unknown> | null;
  scope: string;
  audience: string;
  /** the DPoP key thumbprint the family is bound to; null when bound to a certificate */
  jkt: string | null;
  /** the client certificate's x5t#S256 the family is bound to (token_binding mtls); null when bound to a DPoP key */
  x5tS256: string | null;
  /** epoch seconds */
  familyExpiresAt: number;
  consumed: boolean;
}

/** Serialises rotations and the revocation of one family, until the caller's transaction ends. */
export async function lockFamily(tx: Queryable, familyId: string): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [familyId]);
}

export interface FamilyAccessToken {
  jti: string;
  expiresAt: number;
  statusList: string | null;
  statusIdx: number | null;
}

interface Row {
  token_hash: string;
  family_id: string;
  client_id: string;
  subject: string;
  subject_client_id: string;
  subject_jti: string | null;
  act: Record<string, unknown> | null;
  scope: string;
  audience: string;
  jkt: string | null;
  x5t_s256: string | null;
  family_expires_at: Date;
  consumed_at: Date | null;
}

const fromRow = (r: Row): RefreshTokenRecord => ({
  tokenHash: r.token_hash,
  familyId: r.family_id,
  clientId: r.client_id,
  subject: r.subject,
  subjectClientId: r.subject_client_id,
  subjectJti: r.subject_jti,
  act: r.act,
  scope: r.scope,
  audience: r.audience,
  jkt: r.jkt,
  x5tS256: r.x5t_s256 ?? null,
  familyExpiresAt: Math.floor(new Date(r.family_expires_at).getTime() / 1000),
  consumed: r.consumed_at !== null,
});

export function newRefreshToken(): string {
  return REFRESH_TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export function refreshTokenHash(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export function looksLikeRefreshToken(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(REFRESH_TOKEN_PREFIX) && value.length < 200;
}

export async function findRefreshToken(q: Queryable, token: string): Promise<RefreshTokenRecord | undefined> {
  const r = await q.query<Row>('SELECT * FROM refresh_tokens WHERE token_hash = $1', [refreshTokenHash(token)]);
  return r.rows[0] ? fromRow(r.rows[0]) : undefined;
}

/** Marks the token used; undefined when it was used already (by this or a concurrent request). */
export async function consumeRefreshToken(q: Queryable, tokenHash: string): Promise<RefreshTokenRecord | undefined> {
  const r = await q.query<Row>('UPDATE refresh_tokens SET consumed_at = now() WHERE token_hash = $1 AND consumed_at IS NULL RETURNING *', [tokenHash]);
  return r.rows[0] ? fromRow(r.rows[0]) : undefined;
}

export async function insertRefreshToken(
  q: Queryable,
  token: string,
  r: Omit<RefreshTokenRecord, 'tokenHash' | 'consumed'>,
  access: { jti: string; expiresAt: number; statusList?: string; statusIdx?: number },
): Promise<void> {
  await q.query(
    `INSERT INTO refresh_tokens (token_hash, family_id, client_id, subject, subject_client_id, act, scope, audience, jkt,
       family_expires_at, access_jti, access_expires_at, access_status_list, access_status_idx, subject_jti, x5t_s256)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10), $11, to_timestamp($12), $13, $14, $15, $16)`,
    [refreshTokenHash(token), r.familyId, r.clientId, r.subject, r.subjectClientId, r.act ? JSON.stringify(r.act) : null, r.scope, r.audience, r.jkt,
      r.familyExpiresAt, access.jti, access.expiresAt, access.statusList ?? null, access.statusIdx ?? null, r.subjectJti, r.x5tS256],
  );
}

/** The family's access tokens that have not expired yet (to revoke with the family). */
export async function familyAccessTokens(q: Queryable, familyId: string): Promise<FamilyAccessToken[]> {
  const r = await q.query<{ access_jti: string; access_expires_at: Date; access_status_list: string | null; access_status_idx: number | null }>(
    `SELECT access_jti, access_expires_at, access_status_list, access_status_idx FROM refresh_tokens
     WHERE family_id = $1 AND access_jti IS NOT NULL AND access_expires_at > now()`,
    [familyId],
  );
  return r.rows.map((x) => ({
    jti: x.access_jti,
    expiresAt: Math.floor(new Date(x.access_expires_at).getTime() / 1000),
    statusList: x.access_status_list,
    statusIdx: x.access_status_idx,
  }));
}

/** Each family's expiry (epoch s), for the revocation record of families a chain revocation kills. */
export async function familyExpiries(q: Queryable, familyIds: string[]): Promise<Map<string, number>> {
  if (!familyIds.length) return new Map();
  const r = await q.query<{ family_id: string; expires_at: Date }>(
    'SELECT family_id, max(family_expires_at) AS expires_at FROM refresh_tokens WHERE family_id = ANY($1::text[]) GROUP BY family_id',
    [familyIds],
  );
  return new Map(r.rows.map((x) => [x.family_id, Math.floor(new Date(x.expires_at).getTime() / 1000)]));
}

export async function pruneRefreshTokens(q: Queryable): Promise<number> {
  return (await q.query("DELETE FROM refresh_tokens WHERE family_expires_at < now() - interval '1 hour'")).rowCount;
}
