// The status lists in Postgres: `status_lists` (one row a list, with the next free index) and
// `status_bits` (one row a revoked token's bit). status-list.ts decides; this file holds the SQL.
import type { Db, Queryable } from '../storage/db.js';

export interface StatusRef {
  listId: string;
  idx: number;
}

/** Set the bits of tokens that are being revoked, inside the caller's transaction; returns the lists that changed. */
export async function setStatusBits(q: Queryable, refs: StatusRef[]): Promise<string[]> {
  if (!refs.length) return [];
  const r = await q.query<{ list_id: string }>(
    `INSERT INTO status_bits (list_id, idx) SELECT * FROM unnest($1::text[], $2::int[])
     ON CONFLICT DO NOTHING RETURNING list_id`,
    [refs.map((x) => x.listId), refs.map((x) => x.idx)],
  );
  return [...new Set(r.rows.map((x) => x.list_id))];
}

/**
 * Set the bits of tokens whose revocation raced their issuance record: a revocation that committed
 * while the token's record was still on its way to Postgres cannot have found it, and the record's
 * own check may not have seen the revocation yet. Run every second; returns the lists it changed.
 */
export async function reconcileRecentRevocations(q: Queryable): Promise<string[]> {
  const r = await q.query<{ list_id: string }>(
    `INSERT INTO status_bits (list_id, idx)
     SELECT te.status_list, te.status_idx FROM security_events se
     JOIN token_events te ON te.outcome = 'issued' AND te.status_list IS NOT NULL AND te.expires_at > now()
       AND ((se.kind = 'client_revoked' AND te.client_id = se.target) OR (se.kind = 'token_revoked' AND te.jti = se.target))
     WHERE se.kind IN ('client_revoked', 'token_revoked') AND se.at > now() - interval '2 minutes'
     ON CONFLICT DO NOTHING RETURNING list_id`,
  );
  return [...new Set(r.rows.map((x) => x.list_id))];
}

export class StatusListStore {
  constructor(
    private readonly db: Db,
    /** a list is kept this long after its window ended (clock skew between instances) */
    private readonly retireAfterSeconds: number,
  ) {}

  /**
   * Reserves `size` indices of list `listId` (created for its window when missing); resolves to the
   * first, or undefined when the list has fewer than that left.
   */
  async reserve(listId: string, window: { start: Date; end: Date }, capacity: number, size: number): Promise<number | undefined> {
    await this.db.query(
      'INSERT INTO status_lists (id, window_start, window_end, capacity) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING',
      [listId, window.start, window.end, capacity],
    );
    const r = await this.db.query<{ start: number }>(
      'UPDATE status_lists SET next_idx = next_idx + $2 WHERE id = $1 AND next_idx + $2 <= capacity RETURNING next_idx - $2 AS start',
      [listId, size],
    );
    return r.rows[0] ? Number(r.rows[0].start) : undefined;
  }

  /** The lists not retired yet. */
  async liveIds(): Promise<string[]> {
    const r = await this.db.query<{ id: string }>('SELECT id FROM status_lists WHERE window_end > now() - make_interval(secs => $1) ORDER BY id', [this.retireAfterSeconds]);
    return r.rows.map((x) => x.id);
  }

  /** A live list's capacity and set bits; undefined for an unknown or retired list. */
  async read(listId: string): Promise<{ capacity: number; bits: number[] } | undefined> {
    const list = await this.db.query<{ capacity: number }>(
      'SELECT capacity FROM status_lists WHERE id = $1 AND window_end > now() - make_interval(secs => $2)',
      [listId, this.retireAfterSeconds],
    );
    if (!list.rows[0]) return undefined;
    const bits = await this.db.query<{ idx: number }>('SELECT idx FROM status_bits WHERE list_id = $1', [listId]);
    return { capacity: list.rows[0].capacity, bits: bits.rows.map((b) => b.idx) };
  }

  /** Deletes lists whose every token has expired; resolves to how many. */
  async retire(): Promise<number> {
    const r = await this.db.query('DELETE FROM status_lists WHERE window_end < now() - make_interval(secs => $1)', [this.retireAfterSeconds]);
    return r.rowCount;
  }
}
