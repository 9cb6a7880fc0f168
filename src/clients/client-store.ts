// Clients as Sigil knows them (metadata + status), persisted in Postgres. Reads on the token path are
// served from an in-process cache that every instance drops on a `client` event from the bus.
import type { JWK } from 'jose';
import type { Db, Queryable } from '../storage/db.js';
import type { FastStore } from '../storage/fast-store.js';

import type { GrantType } from '../tokens/grant-types.js';
import type { TokenBinding, WorkloadBinding } from '../workload/types.js';

// where they are, for the callers that knew them here
export { GRANT_TYPES, TOKEN_EXCHANGE, type GrantType } from '../tokens/grant-types.js';

export interface ClientRecord {
  clientId: string;
  name: string;
  status: 'active' | 'revoked';
  scope: string[];
  audiences: string[];
  serves: string[];
  grantTypes: GrantType[];
  dpopRequired: boolean;
  canIntrospect: boolean;
  isAdmin: boolean;
  jwks?: { keys: JWK[] };
  jwksUri?: string;
  /** a workload identity instead of registered keys (src/workload/types.ts); exactly one of jwks, jwksUri, workload */
  workload?: WorkloadBinding;
  /** what its access tokens are bound to: its DPoP key (default) or its TLS client certificate */
  tokenBinding: TokenBinding;
  createdAt: Date;
  updatedAt: Date;
  revokedAt?: Date;
  revokedBy?: string;
  revokedReason?: string;
}

export type NewClient = Omit<ClientRecord, 'status' | 'createdAt' | 'updatedAt' | 'revokedAt' | 'revokedBy' | 'revokedReason'>;

interface ClientRow {
  client_id: string;
  name: string;
  status: 'active' | 'revoked';
  scope: string;
  audiences: string[];
  serves: string[];
  grant_types: GrantType[];
  dpop_required: boolean;
  can_introspect: boolean;
  is_admin: boolean;
  jwks: { keys: JWK[] } | null;
  jwks_uri: string | null;
  workload: WorkloadBinding | null;
  token_binding: TokenBinding;
  created_at: Date;
  updated_at: Date;
  revoked_at: Date | null;
  revoked_by: string | null;
  revoked_reason: string | null;
}

function fromRow(r: ClientRow): ClientRecord {
  return {
    clientId: r.client_id,
    name: r.name,
    status: r.status,
    scope: r.scope ? r.scope.split(' ') : [],
    audiences: r.audiences,
    serves: r.serves,
    grantTypes: r.grant_types,
    dpopRequired: r.dpop_required,
    canIntrospect: r.can_introspect,
    isAdmin: r.is_admin,
    jwks: r.jwks ?? undefined,
    jwksUri: r.jwks_uri ?? undefined,
    workload: r.workload ?? undefined,
    tokenBinding: r.token_binding ?? 'dpop',
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
    revokedAt: r.revoked_at ? new Date(r.revoked_at) : undefined,
    revokedBy: r.revoked_by ?? undefined,
    revokedReason: r.revoked_reason ?? undefined,
  };
}

const CHANNEL = 'client';
/** a missed bus message (Redis blip) can leave a cached entry stale at most this long */
const CACHE_MS = 5_000;

export class ClientStore {
  readonly #db: Db;
  readonly #bus: FastStore;
  readonly #cache = new Map<string, { record: ClientRecord | undefined; at: number }>();
  readonly #listeners: Array<(clientId: string | undefined) => void> = [];

  constructor(db: Db, bus: FastStore) {
    this.#db = db;
    this.#bus = bus;
    bus.subscribe(CHANNEL, (clientId) => this.invalidate(clientId));
    bus.onReconnect(() => {
      this.#cache.clear();
      this.#notify(undefined);
    });
  }

  /**
   * Called whenever a cached client may be stale (a bus event, a revocation seen by the revocation
   * list, a reconnect: then with undefined, meaning any client): for caches derived from clients, such
   * as the workload index (src/workload/workload-clients.ts).
   */
  onInvalidate(listener: (clientId: string | undefined) => void): void {
    this.#listeners.push(listener);
  }

  #notify(clientId: string | undefined): void {
    for (const listener of this.#listeners) listener(clientId);
  }

  /** The client as the token path sees it: cached, refreshed on change events. */
  async find(clientId: string): Promise<ClientRecord | undefined> {
    const hit = this.#cache.get(clientId);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.record;
    const record = await this.read(clientId);
    // bounded: unknown ids are attacker-chosen, so negative entries must not grow without limit
    if (this.#cache.size > 10_000) this.#cache.clear();
    this.#cache.set(clientId, { record, at: Date.now() });
    return record;
  }

  /** Straight from Postgres, bypassing the cache (admin reads). */
  async read(clientId: string, q: Queryable = this.#db): Promise<ClientRecord | undefined> {
    const r = await q.query<ClientRow>('SELECT * FROM clients WHERE client_id = $1', [clientId]);
    return r.rows[0] ? fromRow(r.rows[0]) : undefined;
  }

  async list(): Promise<ClientRecord[]> {
    const r = await this.#db.query<ClientRow>('SELECT * FROM clients ORDER BY created_at, client_id');
    return r.rows.map(fromRow);
  }

  async findAdmin(): Promise<ClientRecord | undefined> {
    const r = await this.#db.query<ClientRow>('SELECT * FROM clients WHERE is_admin');
    return r.rows[0] ? fromRow(r.rows[0]) : undefined;
  }

  /** Inserts the client; returns undefined when the id (or the single admin slot) is taken. */
  async create(c: NewClient, q: Queryable = this.#db): Promise<ClientRecord | undefined> {
    const r = await q.query<ClientRow>(
      `INSERT INTO clients (client_id, name, scope, audiences, serves, grant_types, dpop_required, can_introspect, is_admin, jwks, jwks_uri, workload, token_binding)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
       ON CONFLICT DO NOTHING RETURNING *`,
      [c.clientId, c.name, c.scope.join(' '), c.audiences, c.serves, c.grantTypes, c.dpopRequired, c.canIntrospect, c.isAdmin,
        c.jwks ? JSON.stringify(c.jwks) : null, c.jwksUri ?? null, c.workload ? JSON.stringify(c.workload) : null, c.tokenBinding],
    );
    if (!r.rows[0]) return undefined;
    await this.changed(c.clientId);
    return fromRow(r.rows[0]);
  }

  /**
   * Marks an active client revoked, inside the caller's transaction (Revocations: its tokens are
   * refused in the same one); false when it was not active. Caches are dropped by the caller.
   */
  async markRevoked(tx: Queryable, clientId: string, actor: string, reason: string | undefined): Promise<boolean> {
    const r = await tx.query(
      `UPDATE clients SET status = 'revoked', revoked_at = now(), revoked_by = $2, revoked_reason = $3, updated_at = now()
       WHERE client_id = $1 AND status = 'active' RETURNING client_id`,
      [clientId, actor, reason ?? null],
    );
    return r.rowCount > 0;
  }

  /** Replaces a client's public keys (a JWKS or a jwks_uri) inside the caller's transaction; false for an unknown client. */
  async replaceKeys(tx: Queryable, clientId: string, keys: { jwks?: { keys: JWK[] }; jwksUri?: string }): Promise<boolean> {
    const r = await tx.query(
      'UPDATE clients SET jwks = $2, jwks_uri = $3, updated_at = now() WHERE client_id = $1 RETURNING client_id',
      [clientId, keys.jwks ? JSON.stringify(keys.jwks) : null, keys.jwksUri ?? null],
    );
    return r.rowCount > 0;
  }

  /** Drop this instance's cached copy (the revocation list tells every instance when to). */
  invalidate(clientId: string): void {
    this.#cache.delete(clientId);
    this.#notify(clientId);
  }

  /** Active clients bound to a SPIFFE ID pattern of this trust domain (uncached; the workload index caches). */
  async activeSpiffeClients(trustDomain: string, q: Queryable = this.#db): Promise<ClientRecord[]> {
    // the trust domain is the host part of spiffe://<td>/...; compared exactly (LIKE would read "_" as a wildcard)
    const r = await q.query<ClientRow>(
      `SELECT * FROM clients WHERE status = 'active' AND workload->>'kind' = 'spiffe'
       AND split_part(substr(workload->>'spiffeId', 10), '/', 1) = $1 ORDER BY created_at, client_id`,
      [trustDomain],
    );
    return r.rows.map(fromRow);
  }

  /** Active clients bound to (issuer, subject) of a federation, whatever their required claims (uncached). */
  async activeFederatedClients(issuer: string, subject: string | undefined, q: Queryable = this.#db): Promise<ClientRecord[]> {
    const r = await q.query<ClientRow>(
      `SELECT * FROM clients WHERE status = 'active' AND workload->>'kind' = 'federated' AND workload->>'issuer' = $1
       AND ($2::text IS NULL OR workload->>'subject' = $2) ORDER BY created_at, client_id`,
      [issuer, subject ?? null],
    );
    return r.rows.map(fromRow);
  }

  /** Tell every instance (this one included) to drop its cached copy. */
  async changed(clientId: string): Promise<void> {
    this.invalidate(clientId);
    await this.#bus.publish(CHANNEL, clientId);
  }
}
