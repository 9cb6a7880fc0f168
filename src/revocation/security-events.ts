// The numbered log of security events (revocations, key changes) in Postgres. Appends serialise on
// one counter row, so versions commit in order and "seen version N" means "seen everything up to N".
import type { Db, Queryable } from '../storage/db.js';

export type SecurityEventKind = 'client_revoked' | 'token_revoked' | 'family_revoked' | 'client_keys_changed';

export interface SecurityEvent {
  version: number;
  kind: SecurityEventKind;
  target: string;
  clientId?: string;
  /** epoch seconds; after it the event no longer matters (token and family revocations) */
  expiresAt?: number;
  actor: string;
  reason?: string;
  /** epoch milliseconds */
  at: number;
  /** in transit only: the status lists whose bits this event set */
  lists?: string[];
}

interface Row {
  version: number;
  kind: SecurityEventKind;
  target: string;
  client_id: string | null;
  expires_at: Date | null;
  actor: string;
  reason: string | null;
  at: Date;
}

function fromRow(r: Row): SecurityEvent {
  return {
    version: Number(r.version),
    kind: r.kind,
    target: r.target,
    clientId: r.client_id ?? undefined,
    expiresAt: r.expires_at ? Math.floor(new Date(r.expires_at).getTime() / 1000) : undefined,
    actor: r.actor,
    reason: r.reason ?? undefined,
    at: new Date(r.at).getTime(),
  };
}

export type NewSecurityEvent = Omit<SecurityEvent, 'version' | 'at'>;

export class SecurityEventStore {
  constructor(private readonly db: Db) {}

  /**
   * Append an event inside the caller's transaction. Returns undefined when the same revocation
   * was recorded before (revoking twice is a no-op); the version number it used is then skipped.
   */
  async append(q: Queryable, e: NewSecurityEvent): Promise<SecurityEvent | undefined> {
    const { rows: [counter] } = await q.query<{ version: number }>('UPDATE security_event_counter SET version = version + 1 WHERE id = 1 RETURNING version');
    const r = await q.query<Row>(
      `INSERT INTO security_events (version, kind, target, client_id, expires_at, actor, reason)
       VALUES ($1, $2, $3, $4, CASE WHEN $5::bigint IS NULL THEN NULL ELSE to_timestamp($5::bigint) END, $6, $7)
       ON CONFLICT DO NOTHING RETURNING *`,
      [counter!.version, e.kind, e.target, e.clientId ?? null, e.expiresAt ?? null, e.actor, e.reason ?? null],
    );
    return r.rows[0] ? fromRow(r.rows[0]) : undefined;
  }

  async find(kind: SecurityEventKind, target: string): Promise<SecurityEvent | undefined> {
    const r = await this.db.query<Row>('SELECT * FROM security_events WHERE kind = $1 AND target = $2 ORDER BY version LIMIT 1', [kind, target]);
    return r.rows[0] ? fromRow(r.rows[0]) : undefined;
  }

  /** Events after `version` that still matter, oldest first. */
  async since(version: number): Promise<SecurityEvent[]> {
    const r = await this.db.query<Row>(
      'SELECT * FROM security_events WHERE version > $1 AND (expires_at IS NULL OR expires_at > now()) ORDER BY version',
      [version],
    );
    return r.rows.map(fromRow);
  }

  async currentVersion(): Promise<number> {
    const r = await this.db.query<{ version: number }>('SELECT version FROM security_event_counter WHERE id = 1');
    return Number(r.rows[0]!.version);
  }

  /** Drop what can no longer matter: expired token/family revocations, day-old key-change notices. */
  async prune(): Promise<number> {
    const r = await this.db.query(
      `DELETE FROM security_events WHERE expires_at < now() - interval '1 minute'
         OR (kind = 'client_keys_changed' AND at < now() - interval '1 day')`,
    );
    return r.rowCount;
  }
}
