// The delegation lineage of derived tokens, and the locks that keep issuing a derived token and
// revoking its chain apart. An issuer takes shared locks on every client of the chain and on the
// parent token, then reads their state; a revocation takes the same locks exclusively before it
// changes that state and before it looks for what was derived. So a derived token is either refused
// (its issuer saw the revocation) or found by the revocation (it committed first) — never neither.
import type { Queryable } from '../storage/db.js';

export interface LineageNode {
  jti: string;
  /** the holder */
  clientId: string;
  subject: string;
  /** act.sub, act.act.sub, ... (outermost first) */
  actors: string[];
  parentJti: string | null;
  familyId: string | null;
  /** epoch seconds */
  expiresAt: number;
  statusList: string | null;
  statusIdx: number | null;
}

export interface ChainState {
  /** clients of the chain that are not active (revoked, or unknown) */
  deadClients: string[];
  /** tokens of the chain on the revocation list */
  revokedTokens: string[];
  familyRevoked: boolean;
}

/** advisory-lock namespaces (two-key form, apart from the one-key refresh family locks) */
const CLIENT_LOCK = 71_001;
const TOKEN_LOCK = 71_002;

/** a revocation still walks through tokens this recently expired (clock skew between instances and Postgres) */
const EXPIRY_MARGIN = "interval '1 minute'";

interface Row {
  jti: string;
  client_id: string;
  subject: string;
  actors: string[];
  parent_jti: string | null;
  family_id: string | null;
  expires_at: Date;
  status_list: string | null;
  status_idx: number | null;
}

const fromRow = (r: Row): LineageNode => ({
  jti: r.jti,
  clientId: r.client_id,
  subject: r.subject,
  actors: r.actors,
  parentJti: r.parent_jti,
  familyId: r.family_id,
  expiresAt: Math.floor(new Date(r.expires_at).getTime() / 1000),
  statusList: r.status_list,
  statusIdx: r.status_idx,
});

const sortedUnique = (values: string[]) => [...new Set(values)].sort();

export async function insertLineage(q: Queryable, n: LineageNode): Promise<void> {
  await q.query(
    `INSERT INTO token_lineage (jti, client_id, subject, actors, parent_jti, family_id, expires_at, status_list, status_idx)
     VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7), $8, $9)`,
    [n.jti, n.clientId, n.subject, n.actors, n.parentJti, n.familyId, n.expiresAt, n.statusList, n.statusIdx],
  );
}

/** Issuer side: shared locks on the chain's clients (sorted), then on the parent token. */
export async function lockChainForIssuance(q: Queryable, clients: string[], parentJti: string | null): Promise<void> {
  await q.query('SELECT pg_advisory_xact_lock_shared($1, hashtext(c)) FROM unnest($2::text[]) AS c', [CLIENT_LOCK, sortedUnique(clients)]);
  if (parentJti !== null) await q.query('SELECT pg_advisory_xact_lock_shared($1, hashtext($2))', [TOKEN_LOCK, parentJti]);
}

/** The truth in Postgres about a chain (read after lockChainForIssuance, in the same transaction). */
export async function chainState(q: Queryable, chain: { clients: string[]; tokens: string[]; familyId: string | null }): Promise<ChainState> {
  const r = await q.query<{ dead_clients: string[]; revoked_tokens: string[]; family_revoked: boolean }>(
    `SELECT
       ARRAY(SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS (SELECT 1 FROM clients WHERE client_id = c AND status = 'active')) AS dead_clients,
       ARRAY(SELECT target FROM security_events WHERE kind = 'token_revoked' AND target = ANY($2::text[])) AS revoked_tokens,
       EXISTS (SELECT 1 FROM security_events WHERE kind = 'family_revoked' AND target = $3::text) AS family_revoked`,
    [sortedUnique(chain.clients), chain.tokens, chain.familyId],
  );
  const row = r.rows[0]!;
  return { deadClients: row.dead_clients, revokedTokens: row.revoked_tokens, familyRevoked: row.family_revoked };
}

/** Revocation side: the client's lock, exclusively (waits for issuers that checked it as active). */
export async function lockClientForRevocation(q: Queryable, clientId: string): Promise<void> {
  await q.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [CLIENT_LOCK, clientId]);
}

/** Revocation side: the tokens' locks, exclusively (sorted), before looking for what was derived from them. */
export async function lockTokensForRevocation(q: Queryable, jtis: string[]): Promise<void> {
  if (!jtis.length) return;
  await q.query('SELECT pg_advisory_xact_lock($1, hashtext(j)) FROM unnest($2::text[]) AS j', [TOKEN_LOCK, sortedUnique(jtis)]);
}

/** Tokens derived directly from any of `parents` that have not expired (a child never outlives its parent). */
export async function liveChildren(q: Queryable, parents: string[]): Promise<LineageNode[]> {
  if (!parents.length) return [];
  const r = await q.query<Row>(
    `SELECT * FROM token_lineage WHERE parent_jti = ANY($1::text[]) AND expires_at > now() - ${EXPIRY_MARGIN}`,
    [parents],
  );
  return r.rows.map(fromRow);
}

/** Live derived tokens naming the client as holder, subject or any actor. */
export async function liveTokensNaming(q: Queryable, clientId: string): Promise<LineageNode[]> {
  const r = await q.query<Row>(
    `SELECT * FROM token_lineage
     WHERE (client_id = $1 OR subject = $1 OR actors @> ARRAY[$1]::text[]) AND expires_at > now() - ${EXPIRY_MARGIN}`,
    [clientId],
  );
  return r.rows.map(fromRow);
}

export async function pruneLineage(q: Queryable): Promise<number> {
  return (await q.query("DELETE FROM token_lineage WHERE expires_at < now() - interval '1 hour'")).rowCount;
}
