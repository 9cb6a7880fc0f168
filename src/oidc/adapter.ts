// oidc-provider's storage adapter. Three kinds of model:
//  - Client: read from the clients table (through the cache); revoked clients do not exist for it;
//  - ReplayDetection: the atomic, shared claim of a client assertion's jti (see replay-claims.ts);
//  - everything else (grants, refresh tokens, registration tokens): rows in oidc_models.
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type { ClientRecord, ClientStore } from '../clients/client-store.js';
import type { Db } from '../storage/db.js';
import { REPLAY_CLAIM_TTL, type ClaimingRequest, type ReplayClaims } from './replay-claims.js';

export type ClientMetadataOf = (record: ClientRecord) => AdapterPayload;

class ReadOnly {
  async upsert(_id: string, _payload: AdapterPayload, _expiresIn: number): Promise<void> {
    throw new Error('this model is managed by Sigil, not through oidc-provider');
  }
  async findByUid(): Promise<undefined> {
    return undefined;
  }
  async findByUserCode(): Promise<undefined> {
    return undefined;
  }
  async consume(): Promise<void> {}
  async destroy(): Promise<void> {}
  async revokeByGrantId(): Promise<void> {}
}

class ClientAdapter extends ReadOnly implements Adapter {
  constructor(private readonly clients: ClientStore, private readonly metadataOf: ClientMetadataOf, private readonly isRevoked: (clientId: string) => boolean) {
    super();
  }
  async find(id: string): Promise<AdapterPayload | undefined> {
    // the revocation list is consulted too: it is current within a second on every instance
    if (this.isRevoked(id)) return undefined;
    const record = await this.clients.find(id);
    return record && record.status === 'active' ? this.metadataOf(record) : undefined;
  }
}

/** The request being handled (oidc-provider keeps it in AsyncLocalStorage), if any. */
export type CurrentRequest = () => ClaimingRequest | undefined;

/**
 * oidc-provider's ReplayDetection.unique() does find() then upsert(). Making find() the atomic claim
 * closes the window between the two: of N concurrent copies exactly one finds nothing. The claim,
 * and its pairing with the request's DPoP proof, is ReplayClaims' (replay-claims.ts).
 */
class ReplayAdapter extends ReadOnly implements Adapter {
  constructor(private readonly claims: ReplayClaims, private readonly currentRequest: CurrentRequest) {
    super();
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const seen = this.claims.assertion(this.currentRequest(), id);
    if (seen === false || !(await seen)) return undefined;
    // already claimed: answer with a record that oidc-provider accepts as "seen"
    const now = Math.floor(Date.now() / 1000);
    return { jti: id, kind: 'ReplayDetection', iat: now, exp: now + 60 };
  }
  override async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    // the claim made by find() already lasts long enough for every assertion Sigil accepts (300 s at
    // most); only a longer life needs another round trip
    if (expiresIn > REPLAY_CLAIM_TTL) await this.claims.extend(String(payload.iss ?? ''), id, expiresIn);
  }
}

class SqlModelAdapter implements Adapter {
  constructor(private readonly db: Db, private readonly model: string) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    await this.db.query(
      `INSERT INTO oidc_models (model, id, payload, grant_id, uid, user_code, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::int > 0 THEN now() + make_interval(secs => $7::int) END)
       ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id,
         uid = EXCLUDED.uid, user_code = EXCLUDED.user_code, expires_at = EXCLUDED.expires_at`,
      [this.model, id, JSON.stringify(payload), payload.grantId ?? null, payload.uid ?? null, payload.userCode ?? null, expiresIn ?? 0],
    );
  }

  async #findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
    const r = await this.db.query<{ payload: AdapterPayload; consumed_at: Date | null }>(
      `SELECT payload, consumed_at FROM oidc_models WHERE model = $1 AND ${column} = $2 AND (expires_at IS NULL OR expires_at > now())`,
      [this.model, value],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    return row.consumed_at ? { ...row.payload, consumed: Math.floor(new Date(row.consumed_at).getTime() / 1000) } : row.payload;
  }

  find(id: string) {
    return this.#findBy('id', id);
  }
  findByUid(uid: string) {
    return this.#findBy('uid', uid);
  }
  findByUserCode(userCode: string) {
    return this.#findBy('user_code', userCode);
  }
  async consume(id: string): Promise<void> {
    await this.db.query('UPDATE oidc_models SET consumed_at = now() WHERE model = $1 AND id = $2', [this.model, id]);
  }
  async destroy(id: string): Promise<void> {
    await this.db.query('DELETE FROM oidc_models WHERE model = $1 AND id = $2', [this.model, id]);
  }
  async revokeByGrantId(grantId: string): Promise<void> {
    await this.db.query('DELETE FROM oidc_models WHERE model = $1 AND grant_id = $2', [this.model, grantId]);
  }
}

export function oidcAdapterFactory(deps: {
  db: Db; clients: ClientStore; metadataOf: ClientMetadataOf; isClientRevoked: (clientId: string) => boolean;
  /** the one-time claims of client assertions (and the proofs paired with them) */
  claims: ReplayClaims;
  currentRequest?: CurrentRequest;
}) {
  return (model: string): Adapter => {
    switch (model) {
      case 'Client':
        return new ClientAdapter(deps.clients, deps.metadataOf, deps.isClientRevoked);
      case 'ReplayDetection':
        return new ReplayAdapter(deps.claims, deps.currentRequest ?? (() => undefined));
      default:
        return new SqlModelAdapter(deps.db, model);
    }
  };
}
