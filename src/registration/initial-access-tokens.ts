// The credentials of dynamic registration, as stored: initial access tokens (RFC 7591 §3, kept only as
// argon2id hashes, used up atomically) and registration access tokens (RFC 7592, kept only as SHA-256).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import argon2 from 'argon2';
import type { Db, Queryable } from '../storage/db.js';

/** `sit_<id>.<secret>`: the id finds the row, the 256-bit secret is checked against its argon2id hash */
const INITIAL_ACCESS_TOKEN = /^sit_([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/;
/** `srat_<secret>`: 256 bits, stored as SHA-256 (a random value that long needs no slow hash) */
const REGISTRATION_ACCESS_TOKEN = /^srat_[A-Za-z0-9_-]{43}$/;

/**
 * OWASP's argon2id baseline (19 MiB, 2 passes). The secret is 256 random bits, so no cost setting
 * makes guessing it feasible; a modest one keeps each presented token cheap to check.
 */
const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export interface InitialAccessToken {
  id: string;
  scope: string[];
  audiences: string[];
  uses: number;
  usesLeft: number;
  createdBy: string;
  createdAt: Date;
  expiresAt: Date;
  revokedAt?: Date;
  revokedBy?: string;
}

export interface NewInitialAccessToken {
  scope: string[];
  audiences: string[];
  uses: number;
  expiresInSeconds: number;
}

/** Why a presented initial access token is refused; never shown to the caller beyond "invalid". */
export type InitialAccessRefusal = 'malformed' | 'unknown' | 'wrong_secret' | 'expired' | 'revoked' | 'used_up' | 'throttled';

/** Whether an argon2 check may run now for a token id (see registration-throttle.ts). */
export type SecretCheckAdmission = { ok: true } | { ok: false; retryAfterSeconds: number };

export type InitialAccessCheck =
  | { ok: true; record: InitialAccessToken }
  | { ok: false; reason: Exclude<InitialAccessRefusal, 'throttled'>; id?: string }
  | { ok: false; reason: 'throttled'; id: string; retryAfterSeconds: number };

/** dead tokens (expired or revoked) stay listed this long, then housekeeping deletes them */
export const DEAD_TOKEN_RETENTION_SECONDS = 7 * 86_400;
/** secrets this instance has verified, remembered so a partner's retries cost no argon2 */
const MAX_KNOWN_SECRETS = 1000;

interface Row {
  id: string;
  secret_hash: string;
  scope: string;
  audiences: string[];
  uses: number;
  uses_left: number;
  created_by: string;
  created_at: Date;
  expires_at: Date;
  revoked_at: Date | null;
  revoked_by: string | null;
  expired: boolean;
}

function fromRow(r: Row): InitialAccessToken {
  return {
    id: r.id,
    scope: r.scope ? r.scope.split(' ') : [],
    audiences: r.audiences,
    uses: r.uses,
    usesLeft: r.uses_left,
    createdBy: r.created_by,
    createdAt: new Date(r.created_at),
    expiresAt: new Date(r.expires_at),
    revokedAt: r.revoked_at ? new Date(r.revoked_at) : undefined,
    revokedBy: r.revoked_by ?? undefined,
  };
}

const COLUMNS = 'id, secret_hash, scope, audiences, uses, uses_left, created_by, created_at, expires_at, revoked_at, revoked_by, expires_at <= now() AS expired';

export const sha256 = (value: string): string => createHash('sha256').update(value).digest('hex');

export class InitialAccessTokens {
  /** token id → its stored hash and the SHA-256 of the secret that matched it */
  readonly #known = new Map<string, { secretHash: string; digest: Buffer }>();
  /** argon2 checks under way, by id and SHA-256 of the secret: identical presentations share one */
  readonly #checking = new Map<string, Promise<boolean>>();
  #secretChecks = 0;

  constructor(private readonly db: Db) {}

  /** how many argon2 verifications this instance has run (tests and operators watch it) */
  get secretChecks(): number {
    return this.#secretChecks;
  }

  /** A new token; the returned `token` is the only copy of its secret. */
  async issue(input: NewInitialAccessToken, actor: string, q: Queryable = this.db): Promise<{ token: string; record: InitialAccessToken }> {
    // hex: an id never starts with '-', which the CLI would read as an option (`sigil registration-tokens revoke ID`)
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const secretHash = await argon2.hash(secret, ARGON2_OPTIONS);
    const r = await q.query<Row>(
      `INSERT INTO initial_access_tokens (id, secret_hash, scope, audiences, uses, uses_left, created_by, expires_at)
       VALUES ($1, $2, $3, $4, $5, $5, $6, now() + make_interval(secs => $7)) RETURNING ${COLUMNS}`,
      [id, secretHash, input.scope.join(' '), input.audiences, input.uses, actor, input.expiresInSeconds],
    );
    return { token: `sit_${id}.${secret}`, record: fromRow(r.rows[0]!) };
  }

  /**
   * Check a presented token without using it. Its row's state first: a dead or unknown id costs one
   * indexed read, never argon2 (every former partner knows a token id). Then the secret: against the
   * one this instance already verified for the row (SHA-256), else argon2id, if `admit` allows it.
   * A use is taken only by consume(), once the registration it allows is certain.
   */
  async check(token: string, admit: (id: string) => SecretCheckAdmission = () => ({ ok: true })): Promise<InitialAccessCheck> {
    const m = INITIAL_ACCESS_TOKEN.exec(token);
    if (!m) return { ok: false, reason: 'malformed' };
    const [, id, secret] = m as unknown as [string, string, string];
    const r = await this.db.query<Row>(`SELECT ${COLUMNS} FROM initial_access_tokens WHERE id = $1`, [id]);
    const row = r.rows[0];
    if (!row) return { ok: false, reason: 'unknown' };
    if (row.revoked_at) return { ok: false, reason: 'revoked', id };
    if (row.expired) return { ok: false, reason: 'expired', id };
    if (row.uses_left <= 0) return { ok: false, reason: 'used_up', id };
    const digest = createHash('sha256').update(secret).digest();
    const known = this.#known.get(id);
    if (known?.secretHash === row.secret_hash) {
      return timingSafeEqual(known.digest, digest) ? { ok: true, record: fromRow(row) } : { ok: false, reason: 'wrong_secret', id };
    }
    const key = `${id}:${digest.toString('hex')}`;
    let checking = this.#checking.get(key);
    if (!checking) {
      const admission = admit(id);
      if (!admission.ok) return { ok: false, reason: 'throttled', id, retryAfterSeconds: admission.retryAfterSeconds };
      this.#secretChecks++;
      checking = argon2.verify(row.secret_hash, secret).catch(() => false).finally(() => this.#checking.delete(key));
      this.#checking.set(key, checking);
    }
    if (!(await checking)) return { ok: false, reason: 'wrong_secret', id };
    this.#remember(id, row.secret_hash, digest);
    return { ok: true, record: fromRow(row) };
  }

  #remember(id: string, secretHash: string, digest: Buffer): void {
    this.#known.delete(id);
    if (this.#known.size >= MAX_KNOWN_SECRETS) this.#known.delete(this.#known.keys().next().value!);
    this.#known.set(id, { secretHash, digest });
  }

  /**
   * Housekeeping: delete tokens that expired or were revoked more than `retentionSeconds` ago. The
   * clients they registered keep their audit rows (`client.register` names the token).
   */
  async prune(retentionSeconds = DEAD_TOKEN_RETENTION_SECONDS, q: Queryable = this.db): Promise<number> {
    const r = await q.query(
      `DELETE FROM initial_access_tokens
       WHERE expires_at < now() - make_interval(secs => $1) OR revoked_at < now() - make_interval(secs => $1)`,
      [retentionSeconds],
    );
    return r.rowCount;
  }

  /**
   * Take one use, atomically: concurrent registrations on any number of instances serialise on the
   * row, so a token created with N uses registers exactly N clients. Undefined when none is left.
   */
  async consume(id: string, q: Queryable = this.db): Promise<InitialAccessToken | undefined> {
    const r = await q.query<Row>(
      `UPDATE initial_access_tokens SET uses_left = uses_left - 1
       WHERE id = $1 AND uses_left > 0 AND expires_at > now() AND revoked_at IS NULL
       RETURNING ${COLUMNS}`,
      [id],
    );
    return r.rows[0] ? fromRow(r.rows[0]) : undefined;
  }

  /** Revoke a token (idempotent); undefined when there is no such token. */
  async revoke(id: string, actor: string, q: Queryable = this.db): Promise<InitialAccessToken | undefined> {
    await q.query('UPDATE initial_access_tokens SET revoked_at = now(), revoked_by = $2 WHERE id = $1 AND revoked_at IS NULL', [id, actor]);
    return this.read(id, q);
  }

  async read(id: string, q: Queryable = this.db): Promise<InitialAccessToken | undefined> {
    const r = await q.query<Row>(`SELECT ${COLUMNS} FROM initial_access_tokens WHERE id = $1`, [id]);
    return r.rows[0] ? fromRow(r.rows[0]) : undefined;
  }

  async list(): Promise<InitialAccessToken[]> {
    const r = await this.db.query<Row>(`SELECT ${COLUMNS} FROM initial_access_tokens ORDER BY created_at, id`);
    return r.rows.map(fromRow);
  }
}

/** RFC 7592: which clients registered themselves, and the hash of each one's registration access token. */
export class ClientRegistrations {
  constructor(private readonly db: Db) {}

  /** Record a registration; returns the registration access token (its only copy). */
  async create(clientId: string, initialAccessTokenId: string, q: Queryable = this.db): Promise<string> {
    const token = `srat_${randomBytes(32).toString('base64url')}`;
    await q.query('INSERT INTO client_registrations (client_id, access_token_hash, initial_access_token_id) VALUES ($1, $2, $3)', [
      clientId, sha256(token), initialAccessTokenId,
    ]);
    return token;
  }

  /** True when `token` is the registration access token of `clientId`. */
  async verify(clientId: string, token: string): Promise<boolean> {
    if (!REGISTRATION_ACCESS_TOKEN.test(token)) return false;
    const r = await this.db.query<{ access_token_hash: string }>('SELECT access_token_hash FROM client_registrations WHERE client_id = $1', [clientId]);
    const stored = r.rows[0]?.access_token_hash;
    if (!stored) return false;
    const given = Buffer.from(sha256(token), 'hex');
    const expected = Buffer.from(stored, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** the initial access token a client registered with, while that token is kept (see prune) */
  async initialAccessTokenOf(clientId: string): Promise<string | undefined> {
    const r = await this.db.query<{ initial_access_token_id: string | null }>('SELECT initial_access_token_id FROM client_registrations WHERE client_id = $1', [clientId]);
    return r.rows[0]?.initial_access_token_id ?? undefined;
  }
}
