// Delegation chains: the clients a token names (holder, subject, every actor of its nested `act`), how
// deep it is, and issuing a token derived from another (token exchange, refresh) so that the chain's
// revocation can never miss it. A signed derived token leaves only after one Postgres transaction has
// locked its chain against revocation, read the truth there (not the in-memory list) and recorded it.
import type { Db, Queryable } from '../storage/db.js';
import { chainState, insertLineage, lockChainForIssuance, type LineageNode } from './token-lineage.js';
import { statusRefOf, type AccessTokenClaims } from './access-tokens.js';
import type { IssuedToken } from './grants/shared.js';

/** the deepest `act` nesting anything reads; a chain deeper than this is treated as revoked */
export const ACT_WALK_LIMIT = 32;

/**
 * The actors of an `act` claim, outermost (the latest hop) first; undefined when it cannot be read
 * whole: nested deeper than ACT_WALK_LIMIT, or a level without a string `sub` (fail closed).
 */
export function actorsOf(act: unknown): string[] | undefined {
  const actors: string[] = [];
  for (let level = act; level !== undefined; level = (level as { act?: unknown }).act) {
    if (actors.length === ACT_WALK_LIMIT) return undefined;
    if (!level || typeof level !== 'object' || typeof (level as { sub?: unknown }).sub !== 'string') return undefined;
    actors.push((level as { sub: string }).sub);
  }
  return actors;
}

/** Every client a token names: holder, subject and actors; undefined when its chain cannot be read. */
export function chainClientsOf(claims: Pick<AccessTokenClaims, 'client_id' | 'sub' | 'act'>): string[] | undefined {
  const actors = actorsOf(claims.act);
  if (!actors) return undefined;
  return [claims.client_id, ...(typeof claims.sub === 'string' ? [claims.sub] : []), ...actors];
}

/** What a derived token hangs on: all of it must be alive, in Postgres, while it is issued. */
export interface ChainOfIssue {
  /** every client the new token names, and any other client whose revocation must refuse it */
  clients: string[];
  /** the token it is derived from (the subject token; for a refresh, its family's) */
  parentJti: string | null;
  /** other tokens that must not be revoked (e.g. the actor_token) */
  tokens?: string[];
  familyId?: string | null;
}

/** The new token's place in the lineage. */
export interface DerivedPlace {
  subject: string;
  actors: string[];
  parentJti: string | null;
  familyId: string | null;
}

export class DelegationChains {
  constructor(
    private readonly db: Db,
    /** `${issuer}/status-lists/` */
    private readonly statusListPrefix: string,
  ) {}

  /**
   * Under shared locks that every revocation of the chain takes exclusively, why Postgres says the
   * chain is dead (undefined while it is alive). For use inside the caller's transaction.
   */
  async problem(tx: Queryable, chain: ChainOfIssue): Promise<string | undefined> {
    await lockChainForIssuance(tx, chain.clients, chain.parentJti);
    const tokens = [...(chain.parentJti !== null ? [chain.parentJti] : []), ...(chain.tokens ?? [])];
    const state = await chainState(tx, { clients: chain.clients, tokens, familyId: chain.familyId ?? null });
    if (state.familyRevoked) return 'the refresh token family has been revoked';
    if (chain.parentJti !== null && state.revokedTokens.includes(chain.parentJti)) return 'a token this one derives from has been revoked';
    if (state.revokedTokens.length) return 'a token of the delegation chain has been revoked';
    if (state.deadClients.length) return 'a client of the delegation chain has been revoked';
    return undefined;
  }

  /** Record an issued derived token, in the transaction that issued it. */
  async record(tx: Queryable, issued: IssuedToken, place: DerivedPlace): Promise<void> {
    const status = issued.extra ? statusRefOf(issued.extra as AccessTokenClaims, this.statusListPrefix) : undefined;
    const node: LineageNode = {
      jti: issued.jti, clientId: issued.clientId, ...place, expiresAt: issued.expiresAt, statusList: status?.listId ?? null, statusIdx: status?.idx ?? null,
    };
    await insertLineage(tx, node);
  }

  /**
   * Let a signed derived token leave: lock and check its chain, run `alongside` (e.g. start its
   * refresh family) and record it, in one transaction. Throws ChainRevoked when the chain is dead; the
   * token must then be dropped. (Signing happens before: no connection is held while it runs.)
   */
  async issue<T>(chain: ChainOfIssue, issued: IssuedToken, place: DerivedPlace, alongside: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => {
      const problem = await this.problem(tx, chain);
      if (problem) throw new ChainRevoked(problem);
      const result = await alongside(tx);
      await this.record(tx, issued, place);
      return result;
    });
  }
}

export class ChainRevoked extends Error {
  override name = 'ChainRevoked';
}
