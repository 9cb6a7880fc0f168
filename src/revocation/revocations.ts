// What revoking does. Each operation is one Postgres transaction (state change, security event,
// status-list bits, audit row); the revocation list then announces it to every instance.
import type { JWK } from 'jose';
import type { Logger } from '../log.js';
import type { ClientRecord, ClientStore } from '../clients/client-store.js';
import type { Queryable } from '../storage/db.js';
import { audit } from '../storage/audit-log.js';
import type { NewSecurityEvent, SecurityEvent } from './security-events.js';
import type { RevocationList } from './revocation-list.js';
import { setStatusBits, type StatusRef } from './status-list-store.js';
import { familyAccessTokens, familyExpiries, lockFamily } from '../tokens/refresh-token-store.js';
import { issuedToken, liveStatusRefsOf } from '../tokens/token-events.js';
import { liveChildren, liveTokensNaming, lockClientForRevocation, lockTokensForRevocation } from '../tokens/token-lineage.js';

type Append = (e: NewSecurityEvent) => Promise<SecurityEvent | undefined>;

export interface TokenRevocationRecord {
  jti: string;
  client_id: string | null;
  status: 'revoked';
  revoked_at: string;
  revoked_by: string;
  reason: string | null;
  expires_at: string;
  /** false when Sigil has no record of issuing this jti (it is refused anyway, should it appear) */
  known: boolean;
}

export class Revocations {
  constructor(
    private readonly list: RevocationList,
    private readonly clients: ClientStore,
    private readonly log: Logger,
    /** the longest an access token can live: bounds how long a revocation of an unknown jti is kept */
    private readonly maxTokenTtlSeconds: number,
    /** writes this instance's buffered issuance records, so a token issued here a moment ago is found */
    private readonly flushIssued: () => Promise<void> = async () => {},
  ) {}

  /**
   * Revoke a client: no new tokens, every token it holds refused, and the status bits set of every
   * live token naming it as holder, subject or actor (so gateways checking offline agree with
   * introspection). Families whose chain names it are refused by the same checks. Idempotent.
   */
  async revokeClient(clientId: string, actor: string, reason?: string): Promise<ClientRecord | undefined> {
    const changed = await this.list.transaction(async (tx, append) => {
      // waits for exchanges and refreshes that checked this client as active, so their tokens are found below
      await lockClientForRevocation(tx, clientId);
      if (!(await this.clients.markRevoked(tx, clientId, actor, reason))) return false;
      const event = await append({ kind: 'client_revoked', target: clientId, clientId, actor, reason });
      const live = await liveStatusRefsOf(tx, clientId);
      const derived = (await liveTokensNaming(tx, clientId)).filter((n) => n.statusList !== null);
      const refs = [...live, ...derived.map((n) => ({ listId: n.statusList!, idx: n.statusIdx! }))];
      const lists = await setStatusBits(tx, refs);
      if (event) event.lists = lists;
      await audit(tx, { actor, action: 'client.revoke', target: clientId, reason, details: { live_tokens: live.length, derived_tokens: derived.length } });
      return true;
    });
    if (changed) this.log.info({ action: 'client.revoke', actor, client_id: clientId, reason }, 'client revoked');
    this.clients.invalidate(clientId);
    return this.clients.read(clientId);
  }

  /**
   * Revoke one access token by jti. What Sigil recorded at issuance (client, expiry, status index)
   * is used when the caller does not know it; an unknown jti is kept for the longest token lifetime.
   */
  async revokeToken(jti: string, actor: string, reason?: string, known?: { clientId: string; expiresAt: number; status?: StatusRef }): Promise<TokenRevocationRecord> {
    // (one issued on another instance moments ago still gets its status bit from the reconciliation)
    if (!known) await this.flushIssued();
    const record = await this.list.transaction(async (tx, append) => {
      const info = known ?? (await issuedToken(tx, jti));
      const expiresAt = info?.expiresAt ?? Math.floor(Date.now() / 1000) + this.maxTokenTtlSeconds;
      const event = await append({ kind: 'token_revoked', target: jti, clientId: info?.clientId, expiresAt, actor, reason });
      const lists = new Set(info?.status && event ? await setStatusBits(tx, [info.status]) : []);
      // everything exchanged (or refreshed) from it dies with it, also when it was revoked before
      const derived = await this.#revokeDerived(tx, append, [jti], actor, reason ?? 'derived from a revoked token');
      for (const l of derived.lists) lists.add(l);
      if (event) {
        event.lists = [...lists];
        await audit(tx, { actor, action: 'token.revoke', target: jti, reason, details: { client_id: info?.clientId, derived_tokens: derived.tokens } });
      }
      const existing = event ?? (await this.list.store.find('token_revoked', jti));
      return toRecord(existing, jti, !!info);
    });
    this.log.info({ action: 'token.revoke', actor, jti, reason }, 'token revoked');
    return record;
  }

  /**
   * Kill a refresh-token family: the family is refused from now on, and so is every access token
   * it produced (JWTs cannot be recalled, so their jtis go onto the revocation list).
   */
  async revokeFamily(familyId: string, familyExpiresAt: number, clientId: string, actor: string, reason: string): Promise<boolean> {
    const changed = await this.list.transaction(async (tx, append) => {
      // waits for a rotation of this family in flight, so its new access token is revoked too
      await lockFamily(tx, familyId);
      const family = await append({ kind: 'family_revoked', target: familyId, clientId, expiresAt: familyExpiresAt, actor, reason });
      if (!family) return false;
      const tokens = await familyAccessTokens(tx, familyId);
      const lists = new Set<string>();
      for (const t of tokens) {
        const e = await append({ kind: 'token_revoked', target: t.jti, clientId, expiresAt: t.expiresAt, actor, reason });
        if (e && t.statusList !== null) {
          for (const l of await setStatusBits(tx, [{ listId: t.statusList, idx: t.statusIdx! }])) lists.add(l);
        }
      }
      // and the tokens exchanged from them, and so on down
      const derived = await this.#revokeDerived(tx, append, tokens.map((t) => t.jti), actor, reason);
      for (const l of derived.lists) lists.add(l);
      family.lists = [...lists];
      await audit(tx, { actor, action: 'refresh_family.revoke', target: familyId, reason, details: { client_id: clientId, access_tokens: tokens.length, derived_tokens: derived.tokens } });
      return true;
    });
    if (changed) this.log.warn({ action: 'refresh_family.revoke', actor, family: familyId, client_id: clientId, reason }, 'refresh token family revoked');
    return changed;
  }

  /**
   * Revoke every live token derived from `roots` (exchanged from them, or from the refresh families
   * exchanged from them, and so on down), kill those families, and set the status bits — inside the
   * caller's transaction. Each level is locked before its children are read: an exchange or refresh
   * holding a parent's lock commits first and is found, one arriving later sees the revocation.
   */
  async #revokeDerived(tx: Queryable, append: Append, roots: string[], actor: string, reason: string): Promise<{ tokens: number; lists: string[] }> {
    const seen = new Set(roots);
    const refs: StatusRef[] = [];
    const families = new Map<string, string>();
    let frontier = roots;
    let count = 0;
    while (frontier.length) {
      await lockTokensForRevocation(tx, frontier);
      const children = (await liveChildren(tx, frontier)).filter((c) => !seen.has(c.jti));
      for (const c of children) {
        seen.add(c.jti);
        count++;
        await append({ kind: 'token_revoked', target: c.jti, clientId: c.clientId, expiresAt: c.expiresAt, actor, reason });
        if (c.statusList !== null) refs.push({ listId: c.statusList, idx: c.statusIdx! });
        if (c.familyId !== null) families.set(c.familyId, c.clientId);
      }
      frontier = children.map((c) => c.jti);
    }
    // a family whose parent died: its every token was a child of that parent, revoked above
    const expiries = await familyExpiries(tx, [...families.keys()]);
    for (const [familyId, clientId] of families) {
      await append({ kind: 'family_revoked', target: familyId, clientId, expiresAt: expiries.get(familyId), actor, reason });
    }
    return { tokens: count, lists: await setStatusBits(tx, refs) };
  }

  /** Replace a client's public keys; every instance drops its cached copy (old keys refused at once). */
  async setClientKeys(clientId: string, keys: { jwks?: { keys: JWK[] }; jwksUri?: string }, actor: string): Promise<ClientRecord | undefined> {
    const changed = await this.list.transaction(async (tx, append) => {
      if (!(await this.clients.replaceKeys(tx, clientId, keys))) return false;
      await append({ kind: 'client_keys_changed', target: clientId, clientId, actor });
      await audit(tx, { actor, action: 'client.keys.set', target: clientId, details: { kids: keys.jwks?.keys.map((k) => k.kid), jwks_uri: keys.jwksUri } });
      return true;
    });
    if (!changed) return undefined;
    this.log.info({ action: 'client.keys.set', actor, client_id: clientId }, 'client keys replaced');
    this.clients.invalidate(clientId);
    return this.clients.read(clientId);
  }
}

function toRecord(e: SecurityEvent | undefined, jti: string, known: boolean): TokenRevocationRecord {
  return {
    jti,
    client_id: e?.clientId ?? null,
    status: 'revoked',
    revoked_at: new Date(e?.at ?? Date.now()).toISOString(),
    revoked_by: e?.actor ?? 'unknown',
    reason: e?.reason ?? null,
    expires_at: new Date((e?.expiresAt ?? 0) * 1000).toISOString(),
    known,
  };
}
