// The one writer of audit_log: what an operator, a registrant or the server itself changed, and why.
import type { Queryable } from './db.js';

export interface AuditEntry {
  actor: string;
  action: string;
  target?: string;
  reason?: string;
  details?: unknown;
}

/** `q` is the transaction of the change it records, where there is one: the row commits with it or not at all. */
export async function audit(q: Queryable, entry: AuditEntry): Promise<void> {
  await q.query('INSERT INTO audit_log (actor, action, target, reason, details) VALUES ($1, $2, $3, $4, $5)', [
    entry.actor, entry.action, entry.target ?? null, entry.reason ?? null, entry.details === undefined ? null : JSON.stringify(entry.details),
  ]);
}
