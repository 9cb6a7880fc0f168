// The issuance/refusal log. The token endpoint only appends to an in-memory buffer; a timer writes
// batches to Postgres, so no token response ever waits on a database write.
import type { Logger } from '../log.js';
import type { Db, Queryable } from '../storage/db.js';
import type { StatusRef } from '../revocation/status-list-store.js';

export interface TokenEvent {
  at: Date;
  outcome: 'issued' | 'refused';
  grantType?: string;
  clientId?: string;
  jti?: string;
  expiresAt?: Date;
  error?: string;
  reason?: string;
  requestId?: string;
  /** the token's status list entry */
  statusList?: string;
  statusIdx?: number;
}

const COLUMNS = 11;

export class TokenEventLog {
  readonly #db: Db;
  readonly #log: Logger;
  #buffer: TokenEvent[] = [];
  #flushing: Promise<void> | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #maxBuffer: number;

  /** lists whose bits a flush set (a token issued just as its client or jti was being revoked) */
  onLateRevocations: (listIds: string[]) => void = () => {};

  constructor(db: Db, log: Logger, { intervalMs = 200, maxBuffer = 100_000 } = {}) {
    this.#db = db;
    this.#log = log;
    this.#maxBuffer = maxBuffer;
    this.#timer = setInterval(() => void this.flush(), intervalMs);
    this.#timer.unref();
  }

  record(event: TokenEvent): void {
    // a Postgres outage must not grow memory without bound; refusals are the first to go, since
    // issued records are what client revocation uses to find live tokens
    if (this.#buffer.length >= this.#maxBuffer) {
      const refusal = event.outcome === 'issued' ? this.#buffer.findIndex((e) => e.outcome === 'refused') : -1;
      const dropped = refusal >= 0 ? this.#buffer.splice(refusal, 1)[0]! : event;
      this.#log.error({ dropped: dropped.outcome, jti: dropped.jti }, 'token event buffer full; event dropped');
      if (dropped === event) return;
    }
    this.#buffer.push(event);
  }

  get pending(): number {
    return this.#buffer.length;
  }

  /** Write everything buffered so far, in batches (also called on shutdown and by tests). */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    while (this.#buffer.length > 0) {
      const batch = this.#buffer.splice(0, 1000);
      let failed = false;
      this.#flushing = this.#write(batch)
        .catch((err: Error) => {
          failed = true;
          // keep the events for the next attempt
          this.#buffer.unshift(...batch);
          this.#log.warn({ reason: err.message, pending: this.#buffer.length }, 'token events not written; will retry');
        })
        .finally(() => {
          this.#flushing = undefined;
        });
      await this.#flushing;
      if (failed) return;
    }
  }

  async #write(batch: TokenEvent[]): Promise<void> {
    const values: unknown[] = [];
    const rows = batch.map((e, i) => {
      values.push(e.at, e.outcome, e.grantType ?? null, e.clientId ?? null, e.jti ?? null, e.expiresAt ?? null, e.error ?? null, e.reason ?? null, e.requestId ?? null, e.statusList ?? null, e.statusIdx ?? null);
      const base = i * COLUMNS;
      return `(${Array.from({ length: COLUMNS }, (_, j) => `$${base + j + 1}`).join(', ')})`;
    });
    // One statement: store the batch and, for a token issued while its client (or its jti) was being
    // revoked elsewhere, which that revocation could not find yet, set its status bit now.
    const late = await this.#db.query<{ list_id: string }>(
      `WITH inserted AS (
         INSERT INTO token_events (at, outcome, grant_type, client_id, jti, expires_at, error, reason, request_id, status_list, status_idx)
         VALUES ${rows.join(', ')} RETURNING client_id, jti, status_list, status_idx
       ), late AS (
         INSERT INTO status_bits (list_id, idx)
         SELECT i.status_list, i.status_idx FROM inserted i
         WHERE i.status_list IS NOT NULL AND EXISTS (
           SELECT 1 FROM security_events se
           WHERE (se.kind = 'client_revoked' AND se.target = i.client_id) OR (se.kind = 'token_revoked' AND se.target = i.jti))
         ON CONFLICT DO NOTHING RETURNING list_id
       )
       SELECT DISTINCT list_id FROM late`,
      values,
    );
    if (late.rows.length) this.onLateRevocations([...new Set(late.rows.map((r) => r.list_id))]);
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}

/** What the issuance record of a jti says (undefined when Sigil has none, or it is not written yet). */
export async function issuedToken(q: Queryable, jti: string): Promise<{ clientId: string; expiresAt: number; status: StatusRef | undefined } | undefined> {
  const r = await q.query<{ client_id: string; expires_at: Date; status_list: string | null; status_idx: number | null }>(
    `SELECT client_id, expires_at, status_list, status_idx FROM token_events WHERE jti = $1 AND outcome = 'issued' LIMIT 1`,
    [jti],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  return {
    clientId: row.client_id,
    expiresAt: Math.floor(new Date(row.expires_at).getTime() / 1000),
    status: row.status_list ? { listId: row.status_list, idx: row.status_idx! } : undefined,
  };
}

/** The status entries of the live tokens issued to a client (as written so far). */
export async function liveStatusRefsOf(q: Queryable, clientId: string): Promise<StatusRef[]> {
  const r = await q.query<{ status_list: string; status_idx: number }>(
    `SELECT status_list, status_idx FROM token_events
     WHERE client_id = $1 AND outcome = 'issued' AND expires_at > now() AND status_list IS NOT NULL`,
    [clientId],
  );
  return r.rows.map((x) => ({ listId: x.status_list, idx: x.status_idx }));
}
