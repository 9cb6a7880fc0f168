// oidc-provider's storage adapter. Three kinds of model:
//  - Client: read from the clients table (through the cache); revoked clients do not exist for it;
//  - ReplayDetection: the atomic, shared claim (see replay-guard.ts);
//  - everything else (grants, refresh tokens, registration tokens): rows in oidc_models.
import { createHash } from 'node:crypto';
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { ClientRecord, ClientStore } from '../clients/client-store.js';
import type { Db } from '../storage/db.js';
import type { ClaimVerdict, ReplayClaim, ReplayGuard } from '../storage/replay-guard.js';

export type ClientMetadataOf = (record: ClientRecord) => AdapterPayload;

/** ttl for the claim made by find(); upsert() then sets the exact expiry oidc-provider asks for */
const REPLAY_CLAIM_TTL = 600;

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
export type CurrentRequest = () => RequestLike | undefined;
export interface RequestLike {
  get(header: string): string;
  oidc?: { route?: string; params?: Record<string, unknown>; client?: { clientId: string; grantTypeAllowed?(type: string): boolean } };
}

/** the payload of a compact JWT, not verified (undefined when it is not one) */
function jwtPayload(jwt: unknown): Record<string, unknown> | undefined {
  const payload = typeof jwt === 'string' ? jwt.split('.')[1] : undefined;
  if (!payload) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const iatOf = (payload: Record<string, unknown> | undefined): number | undefined => (typeof payload?.iat === 'number' ? payload.iat : undefined);

/**
 * The claim oidc-provider will ask about for this request's DPoP proof: id sha256(client_id + jti),
 * as in its ReplayDetection.unique(), and the proof's iat. Read from the proof without verifying it:
 * it is claimed only together with the (verified) client assertion, so it only ever burns that
 * client's own jti, and the proof is verified before anything is issued (same bytes, same iat).
 */
function proofClaim(req: RequestLike): ReplayClaim | undefined {
  const clientId = req.oidc?.client?.clientId;
  const payload = clientId ? jwtPayload(req.get('dpop')) : undefined;
  const jti = payload?.jti;
  if (typeof jti !== 'string' || !jti) return undefined;
  const iat = iatOf(payload);
  return { id: createHash('sha256').update(`${clientId}${jti}`).digest('base64url'), iat: () => iat };
}

/** which claim of a token request: its client assertion's jti (always the first) or its DPoP proof's */
export type ClaimKind = 'assertion' | 'proof';
export interface HeldClaim {
  kind: ClaimKind;
  /** what the claim found (see ReplayGuard) */
  verdict: Promise<ClaimVerdict>;
}

/**
 * Claims answered later. For the requests `defers` picks, oidc-provider is told "not seen before"
 * at once and the real answer is held here: the Redis round trip then runs while the request goes
 * on (DPoP proof check, token signing), and the code that picked the request must take() the
 * answers and refuse a replay before it hands anything out.
 */
export class HeldClaims {
  readonly #held = new WeakMap<object, HeldClaim[]>();

  constructor(readonly defers: (req: RequestLike) => boolean) {}

  hold(req: object, claim: HeldClaim): void {
    // an answer nobody takes (the request failed first) must not surface as an unhandled rejection
    claim.verdict.catch(() => {});
    const list = this.#held.get(req);
    if (list) list.push(claim);
    else this.#held.set(req, [claim]);
  }

  /** the claims held for `req`, in the order they were made; each is handed out once */
  take(req: object): HeldClaim[] {
    const list = this.#held.get(req) ?? [];
    this.#held.delete(req);
    return list;
  }
}

/** The refusal of a JWT that predates a loss of replay records: it may have been used before. */
export function predatesLoss(kind: ClaimKind): errors.OIDCProviderError {
  return kind === 'assertion'
    ? new errors.InvalidClientAuth('client assertion was issued before the server lost its replay records (or has no iat); make a new one')
    : new errors.InvalidDpopProof('DPoP proof was issued before the server lost its replay records; make a new one');
}

/**
 * oidc-provider's ReplayDetection.unique() does find() then upsert(). Making find() the atomic claim
 * closes the window between the two: of N concurrent copies exactly one finds nothing.
 * A token request claims twice, the client assertion's jti and then the DPoP proof's. The first
 * claim takes both in one round trip (the proof only if the assertion was free, exactly as if asked
 * one after the other) and keeps the proof's answer for when oidc-provider asks.
 */
class ReplayAdapter extends ReadOnly implements Adapter {
  readonly #early = new WeakMap<object, Map<string, Promise<ClaimVerdict>>>();

  constructor(private readonly guard: ReplayGuard, private readonly currentRequest: CurrentRequest, private readonly held: HeldClaims | undefined) {
    super();
  }

  /** what `id` found: claimed now, or answered by the request's first round trip */
  #claim(id: string, req: RequestLike | undefined): HeldClaim {
    // only requests reach here (client authentication, a grant's proof): each claim belongs to a client
    const clientId = req?.oidc?.client?.clientId ?? '';
    if (!req) return { kind: 'assertion', verdict: this.guard.claim(clientId, { id, iat: () => undefined }, REPLAY_CLAIM_TTL) };
    const early = this.#early.get(req);
    if (early) {
      const answer = early.get(id);
      early.delete(id);
      return { kind: 'proof', verdict: answer ?? this.guard.claim(clientId, { id, iat: () => iatOf(jwtPayload(req.get('dpop'))) }, REPLAY_CLAIM_TTL) };
    }
    const claims = new Map<string, Promise<ClaimVerdict>>();
    this.#early.set(req, claims);
    // read only when a loss makes it matter; oidc-provider verified the assertion before asking
    const assertion: ReplayClaim = { id, iat: () => iatOf(jwtPayload(req.oidc?.params?.client_assertion)) };
    const proof = req.get('dpop') ? proofClaim(req) : undefined;
    if (!proof || proof.id === id) return { kind: 'assertion', verdict: this.guard.claim(clientId, assertion, REPLAY_CLAIM_TTL) };
    const pair = this.guard.claimPair(clientId, assertion, proof, REPLAY_CLAIM_TTL);
    const proofVerdict = pair.then(([, v]) => v);
    // an early answer nobody asks for (the request failed before) must not surface as unhandled
    proofVerdict.catch(() => {});
    claims.set(proof.id, proofVerdict);
    return { kind: 'assertion', verdict: pair.then(([v]) => v) };
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const req = this.currentRequest();
    const claim = this.#claim(id, req);
    if (req && this.held?.defers(req)) {
      this.held.hold(req, claim);
      return undefined;
    }
    const verdict = await claim.verdict;
    if (verdict === 'free') return undefined;
    if (verdict === 'predates-loss') throw predatesLoss(claim.kind);
    // already claimed: answer with a record that oidc-provider accepts as "seen"
    const now = Math.floor(Date.now() / 1000);
    return { jti: id, kind: 'ReplayDetection', iat: now, exp: now + 60 };
  }
  override async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    // the claim made by find() already lasts long enough for every assertion and proof Sigil accepts
    // (both live at most 300 s); only a longer life needs another round trip
    if (expiresIn > REPLAY_CLAIM_TTL) await this.guard.extend(String(payload.iss ?? ''), id, expiresIn);
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
  db: Db; clients: ClientStore; replay: ReplayGuard; metadataOf: ClientMetadataOf; isClientRevoked: (clientId: string) => boolean; currentRequest?: CurrentRequest;
  /** requests whose replay answers are collected later (see HeldClaims) */
  held?: HeldClaims;
}) {
  return (model: string): Adapter => {
    switch (model) {
      case 'Client':
        return new ClientAdapter(deps.clients, deps.metadataOf, deps.isClientRevoked);
      case 'ReplayDetection':
        return new ReplayAdapter(deps.replay, deps.currentRequest ?? (() => undefined), deps.held);
      default:
        return new SqlModelAdapter(deps.db, model);
    }
  };
}
