// Refresh tokens that rotate on every use and detect reuse. A family starts with a token exchange and
// hangs on its subject token: it ends no later than that token's exp and dies when it (or anything it
// was derived from) is revoked. Each use consumes the presented token and issues the next. Presenting
// a consumed token is treated as theft: the family and every access token it produced are revoked.
import { randomUUID } from 'node:crypto';
import type { Db, Queryable } from '../storage/db.js';
import {
  consumeRefreshToken, findRefreshToken, insertRefreshToken, lockFamily, newRefreshToken, refreshTokenHash, type RefreshTokenRecord,
} from './refresh-token-store.js';
import type { ClientRecord } from '../clients/client-store.js';
import type { IssuedToken } from './grants/shared.js';
import { statusRefOf } from './access-tokens.js';
import type { AccessTokenClaims } from './access-tokens.js';
import type { RevocationList } from '../revocation/revocation-list.js';
import type { Revocations } from '../revocation/revocations.js';
import { actorsOf, type ChainOfIssue, type DelegationChains } from './delegation-chain.js';

export type FamilyStart = Omit<RefreshTokenRecord, 'tokenHash' | 'consumed' | 'familyId' | 'familyExpiresAt'> & {
  /** epoch seconds: the subject token's exp, which the family never outlives */
  subjectExpiresAt: number;
};

/** Every client a family names: holder, subject, the subject token's client, every actor; undefined when unreadable. */
export function familyClients(r: RefreshTokenRecord): string[] | undefined {
  const actors = actorsOf(r.act ?? undefined);
  return actors && [r.clientId, r.subject, r.subjectClientId, ...actors];
}

export class RefreshTokens {
  constructor(
    private readonly db: Db,
    private readonly list: RevocationList,
    private readonly revocations: Revocations,
    private readonly familyTtlSeconds: number,
    private readonly statusListPrefix: string,
    private readonly chains: DelegationChains,
  ) {}

  #access(issued: IssuedToken) {
    const status = issued.extra ? statusRefOf(issued.extra as AccessTokenClaims, this.statusListPrefix) : undefined;
    return { jti: issued.jti, expiresAt: issued.expiresAt, statusList: status?.listId, statusIdx: status?.idx };
  }

  /**
   * First token of a new family, issued with the access token of a token exchange, in the exchange's
   * transaction. The family ends no later than its subject token.
   */
  async startFamily(tx: Queryable, start: FamilyStart, familyId: string, issued: IssuedToken): Promise<string> {
    const token = newRefreshToken();
    const { subjectExpiresAt, ...record } = start;
    const familyExpiresAt = Math.min(Math.floor(Date.now() / 1000) + this.familyTtlSeconds, subjectExpiresAt);
    await insertRefreshToken(tx, token, { ...record, familyId, familyExpiresAt }, this.#access(issued));
    return token;
  }

  static newFamilyId(): string {
    return randomUUID();
  }

  find(token: string): Promise<RefreshTokenRecord | undefined> {
    return findRefreshToken(this.db, token);
  }

  /** Why a family can no longer be used, or undefined while it can (this instance's view; rotate() decides in Postgres). */
  deadReason(r: RefreshTokenRecord): string | undefined {
    if (this.list.isFamilyRevoked(r.familyId)) return 'the refresh token family has been revoked';
    if (Math.floor(Date.now() / 1000) >= r.familyExpiresAt) return 'the refresh token family has expired';
    if (r.subjectJti !== null && this.list.isTokenRevoked(r.subjectJti)) return 'the token this refresh token family was exchanged from has been revoked';
    const clients = familyClients(r);
    if (!clients || clients.some((c) => this.list.isClientRevoked(c))) return 'a client of this refresh token family has been revoked';
    return undefined;
  }

  #chain(r: RefreshTokenRecord): ChainOfIssue {
    return { clients: familyClients(r) ?? [], parentJti: r.subjectJti, familyId: r.familyId };
  }

  /**
   * Consume `record` and let `issued` (its successor's access token, signed already) leave with a new
   * refresh token, in one transaction. Whether the family may still be used is decided there, under
   * the family's lock and the chain's (see DelegationChains), from Postgres: a revocation racing this
   * either is seen or finds the new token. 'reused' when the token was consumed already (also by a
   * concurrent request). Unless a refresh token is returned, `issued` must be dropped.
   */
  async rotate(record: RefreshTokenRecord, issued: IssuedToken): Promise<{ refreshToken: string } | { dead: string } | 'reused'> {
    return this.db.transaction(async (tx) => {
      // serialises rotations and revocation of one family (see Revocations.revokeFamily)
      await lockFamily(tx, record.familyId);
      const actors = actorsOf(record.act ?? undefined);
      if (!actors) return { dead: 'the delegation chain of this refresh token family cannot be read' };
      const problem = await this.chains.problem(tx, this.#chain(record));
      if (problem) return { dead: problem };
      if (Math.floor(Date.now() / 1000) >= record.familyExpiresAt) return { dead: 'the refresh token family has expired' };
      const consumed = await consumeRefreshToken(tx, record.tokenHash);
      if (!consumed) return 'reused' as const;
      const next = newRefreshToken();
      const { tokenHash: _h, consumed: _c, ...rest } = consumed;
      await insertRefreshToken(tx, next, rest, this.#access(issued));
      await this.chains.record(tx, issued, { subject: consumed.subject, actors, parentJti: consumed.subjectJti, familyId: consumed.familyId });
      return { refreshToken: next };
    });
  }

  /** Theft response: kill the family and everything it produced. */
  reused(record: RefreshTokenRecord, actor: string): Promise<boolean> {
    return this.revocations.revokeFamily(record.familyId, record.familyExpiresAt, record.clientId, actor, 'refresh token reuse detected');
  }

  /** RFC 7662 for refresh tokens: the holder, or a --can-introspect client, sees it. */
  async introspect(token: string, requester: Pick<ClientRecord, 'clientId' | 'canIntrospect'>): Promise<Record<string, unknown>> {
    const r = await this.find(token);
    if (!r || r.consumed || this.deadReason(r)) return { active: false };
    if (r.clientId !== requester.clientId && !requester.canIntrospect) return { active: false };
    return {
      active: true,
      token_type: 'refresh_token',
      client_id: r.clientId,
      sub: r.subject,
      scope: r.scope || undefined,
      aud: r.audience,
      exp: r.familyExpiresAt,
      cnf: r.x5tS256 !== null ? { 'x5t#S256': r.x5tS256 } : { jkt: r.jkt },
      ...(r.act ? { act: r.act } : {}),
    };
  }

  /** RFC 7009 for refresh tokens: revoking one revokes its family (and its access tokens). */
  async revoke(token: string, requesterId: string): Promise<void> {
    const r = await this.find(token);
    if (!r || r.clientId !== requesterId) return;
    await this.revocations.revokeFamily(r.familyId, r.familyExpiresAt, r.clientId, requesterId, 'revoked by its client (RFC 7009)');
  }

  static hash = refreshTokenHash;
}
