// The trust configuration (SPIFFE trust domains, federated JWT issuers): Postgres is the truth, the
// only writer of `trust_domains` and `federations` is this module, and every instance keeps the whole
// of both tables in memory (they are small), re-read on a bus event, on a bus reconnect and every
// REFRESH_MS whatever happens, so that a removal reaches every instance within a second even when a
// bus message is lost. Fail closed: a copy older than STALE_MS (Postgres unreachable from here) answers
// "unknown" to every lookup, so clients of a trust domain or federation cannot authenticate rather
// than authenticate against trust that may have been withdrawn.
import type { Logger } from '../log.js';
import { audit } from '../storage/audit-log.js';
import type { Db, Queryable } from '../storage/db.js';
import type { FastStore } from '../storage/fast-store.js';
import type { ClientRecord } from '../clients/client-store.js';
import type { NewFederation, NewTrustDomain } from './trust-input.js';
import type { Federation, TrustConfig, TrustDomain } from './types.js';

/** the bus channel of trust changes (every instance re-reads both tables on any message) */
export const TRUST_CHANNEL = 'workload-trust';
/**
 * Serialises the changes that must see each other: creating a workload client (its trust domain or
 * federation configured, no overlapping binding) and removing trust (the affected clients listed).
 */
export const WORKLOAD_CONFIG_LOCK = 0x5161_1013;

/** how often the copy is re-read even without an event */
export const REFRESH_MS = 500;
/** a copy older than this is not used: lookups answer unknown (the bound: one second) */
export const STALE_MS = 1000;

export type TrustChange = { kind: 'trust-domain' | 'federation'; key: string };

interface TrustDomainRow {
  name: string;
  bundle_endpoint: string;
  created_by: string;
  created_at: Date;
  updated_at: Date;
}

interface FederationRow {
  issuer: string;
  jwks_uri: string | null;
  audience: string | null;
  max_lifetime_seconds: number;
  created_by: string;
  created_at: Date;
  updated_at: Date;
}

const trustDomainOf = (r: TrustDomainRow): TrustDomain => ({
  name: r.name, bundleEndpoint: r.bundle_endpoint, createdBy: r.created_by, createdAt: new Date(r.created_at), updatedAt: new Date(r.updated_at),
});

const federationOf = (r: FederationRow): Federation => ({
  issuer: r.issuer,
  ...(r.jwks_uri === null ? {} : { jwksUri: r.jwks_uri }),
  ...(r.audience === null ? {} : { audience: r.audience }),
  maxLifetimeSeconds: r.max_lifetime_seconds,
  createdBy: r.created_by,
  createdAt: new Date(r.created_at),
  updatedAt: new Date(r.updated_at),
});

/** The JSON the admin API answers (and `sigil trust-domains list --json` prints). */
export function trustDomainView(t: TrustDomain) {
  return { name: t.name, bundle_endpoint: t.bundleEndpoint, created_by: t.createdBy, created_at: t.createdAt.toISOString(), updated_at: t.updatedAt.toISOString() };
}

/** jwks_uri null: found by OIDC discovery; audience null: a JWT's aud must be Sigil's issuer. */
export function federationView(f: Federation) {
  return {
    issuer: f.issuer, jwks_uri: f.jwksUri ?? null, audience: f.audience ?? null, max_lifetime_seconds: f.maxLifetimeSeconds,
    created_by: f.createdBy, created_at: f.createdAt.toISOString(), updated_at: f.updatedAt.toISOString(),
  };
}

/** What a removal answers: what was removed and the active clients that can no longer authenticate. */
export interface Removal<T> {
  removed: T;
  affectedClients: string[];
}

/** The clients a removal affects (ClientStore answers it; passed in so this module owns only its tables). */
export interface TrustUsers {
  activeSpiffeClients(trustDomain: string, q: Queryable): Promise<ClientRecord[]>;
  activeFederatedClients(issuer: string, subject: undefined, q: Queryable): Promise<ClientRecord[]>;
}

export interface TrustStoreOptions {
  refreshMs?: number;
  staleMs?: number;
  /** the clock the copy's age is measured with (tests) */
  now?: () => number;
}

interface Copy {
  trustDomains: Map<string, TrustDomain>;
  federations: Map<string, Federation>;
  /** when the read that produced it started: the data is at least this fresh */
  readAt: number;
}

export class TrustStore implements TrustConfig {
  readonly #db: Db;
  readonly #bus: FastStore;
  readonly #log: Logger;
  readonly #users: TrustUsers;
  readonly #refreshMs: number;
  readonly #staleMs: number;
  readonly #now: () => number;
  readonly #listeners: Array<(change: TrustChange) => void> = [];
  #copy: Copy | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** the reload in flight, and whether another was asked for meanwhile (an event during a read must not be lost) */
  #loading: Promise<void> | undefined;
  #again = false;
  #failing = false;
  #closed = false;

  constructor(db: Db, bus: FastStore, log: Logger, users: TrustUsers, opts: TrustStoreOptions = {}) {
    this.#db = db;
    this.#bus = bus;
    this.#log = log;
    this.#users = users;
    this.#refreshMs = opts.refreshMs ?? REFRESH_MS;
    this.#staleMs = opts.staleMs ?? STALE_MS;
    this.#now = opts.now ?? Date.now;
    // the message is whoever published it's choice: it only says "re-read", never what to believe
    bus.subscribe(TRUST_CHANNEL, () => void this.refresh());
    bus.onReconnect(() => void this.refresh());
  }

  /** The first read, then a re-read every refreshMs until close(). A failed first read leaves lookups unknown (fail closed). */
  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => void this.refresh(), this.#refreshMs);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
  }

  /** Re-read both tables now (coalesced with a read in flight: one more read follows it). Never throws. */
  refresh(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#loading) {
      this.#again = true;
      return this.#loading;
    }
    this.#loading = (async () => {
      do {
        this.#again = false;
        await this.#read();
      } while (this.#again && !this.#closed);
    })().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async #read(): Promise<void> {
    const readAt = this.#now();
    let copy: Copy;
    try {
      const domains = await this.#db.query<TrustDomainRow>('SELECT * FROM trust_domains');
      const federations = await this.#db.query<FederationRow>('SELECT * FROM federations');
      copy = {
        trustDomains: new Map(domains.rows.map((r) => [r.name, trustDomainOf(r)])),
        federations: new Map(federations.rows.map((r) => [r.issuer, federationOf(r)])),
        readAt,
      };
    } catch (err) {
      if (this.#closed) return;
      // logged once per outage; lookups turn unknown by themselves once the copy passes staleMs
      if (!this.#failing) this.#log.warn({ err: (err as Error).message }, 'trust configuration: cannot re-read it; workload clients are refused once it is older than the bound');
      this.#failing = true;
      return;
    }
    if (this.#failing) this.#log.info('trust configuration: read again');
    this.#failing = false;
    const previous = this.#copy;
    // a slower read that started earlier must not replace a newer copy
    if (previous && previous.readAt > readAt) return;
    this.#copy = copy;
    for (const change of changesBetween(previous, copy)) {
      for (const listener of this.#listeners) {
        try {
          listener(change);
        } catch (err) {
          this.#log.error({ err: (err as Error).message, change }, 'trust configuration: a change listener failed');
        }
      }
    }
  }

  /** The copy when it is fresh enough to be used; undefined (unknown) past the bound. */
  #fresh(): Copy | undefined {
    const copy = this.#copy;
    return copy && this.#now() - copy.readAt <= this.#staleMs ? copy : undefined;
  }

  async trustDomain(name: string): Promise<TrustDomain | undefined> {
    return this.#fresh()?.trustDomains.get(name);
  }

  async federation(issuer: string): Promise<Federation | undefined> {
    return this.#fresh()?.federations.get(issuer);
  }

  onChange(listener: (change: TrustChange) => void): void {
    this.#listeners.push(listener);
  }

  /** What this instance trusts right now (sorted), or undefined when its copy is past the bound. */
  /** Whether any federation is configured (cheap: asked by every jwt-bearer request at /token). */
  hasFederations(): boolean {
    return (this.#fresh()?.federations.size ?? 0) > 0;
  }

  /** Every configured trust domain (the bundle refresh fetches them before their first use). */
  async trustDomains(): Promise<TrustDomain[]> {
    return this.current()?.trustDomains ?? [];
  }

  current(): { trustDomains: TrustDomain[]; federations: Federation[] } | undefined {
    const copy = this.#fresh();
    if (!copy) return undefined;
    return {
      trustDomains: [...copy.trustDomains.values()].sort((a, b) => a.name.localeCompare(b.name)),
      federations: [...copy.federations.values()].sort((a, b) => a.issuer.localeCompare(b.issuer)),
    };
  }

  /** Whether it is configured, read in the caller's transaction (client creation, under WORKLOAD_CONFIG_LOCK). */
  async isConfigured(q: Queryable, what: { trustDomain: string } | { federation: string }): Promise<boolean> {
    const r = 'trustDomain' in what
      ? await q.query('SELECT 1 FROM trust_domains WHERE name = $1', [what.trustDomain])
      : await q.query('SELECT 1 FROM federations WHERE issuer = $1', [what.federation]);
    return r.rowCount > 0;
  }

  /** Adds a trust domain (audited); undefined when one of that name exists already. */
  async addTrustDomain(input: NewTrustDomain, actor: string): Promise<TrustDomain | undefined> {
    const added = await this.#db.transaction(async (tx) => {
      const r = await tx.query<TrustDomainRow>(
        'INSERT INTO trust_domains (name, bundle_endpoint, created_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING *',
        [input.name, input.bundleEndpoint, actor],
      );
      if (!r.rows[0]) return undefined;
      await audit(tx, { actor, action: 'trust_domain.add', target: input.name, details: { bundle_endpoint: input.bundleEndpoint } });
      return trustDomainOf(r.rows[0]);
    });
    if (added) await this.#announce({ kind: 'trust-domain', key: input.name });
    return added;
  }

  /** Removes a trust domain (audited); undefined when none of that name exists. Its clients stay, and fail to authenticate. */
  async removeTrustDomain(name: string, actor: string): Promise<Removal<TrustDomain> | undefined> {
    const removal = await this.#db.lockedTransaction(WORKLOAD_CONFIG_LOCK, async (tx) => {
      const r = await tx.query<TrustDomainRow>('DELETE FROM trust_domains WHERE name = $1 RETURNING *', [name]);
      if (!r.rows[0]) return undefined;
      const affectedClients = (await this.#users.activeSpiffeClients(name, tx)).map((c) => c.clientId);
      await audit(tx, { actor, action: 'trust_domain.remove', target: name, details: { bundle_endpoint: r.rows[0].bundle_endpoint, affected_clients: affectedClients } });
      return { removed: trustDomainOf(r.rows[0]), affectedClients };
    });
    if (removal) await this.#announce({ kind: 'trust-domain', key: name });
    return removal;
  }

  /** Adds a federation (audited); undefined when one with that issuer exists already. */
  async addFederation(input: NewFederation, actor: string): Promise<Federation | undefined> {
    const added = await this.#db.transaction(async (tx) => {
      const r = await tx.query<FederationRow>(
        `INSERT INTO federations (issuer, jwks_uri, audience, max_lifetime_seconds, created_by) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING RETURNING *`,
        [input.issuer, input.jwksUri ?? null, input.audience ?? null, input.maxLifetimeSeconds, actor],
      );
      if (!r.rows[0]) return undefined;
      await audit(tx, {
        actor, action: 'federation.add', target: input.issuer,
        details: { jwks_uri: input.jwksUri ?? null, audience: input.audience ?? null, max_lifetime_seconds: input.maxLifetimeSeconds },
      });
      return federationOf(r.rows[0]);
    });
    if (added) await this.#announce({ kind: 'federation', key: input.issuer });
    return added;
  }

  /** Removes a federation (audited); undefined when none has that issuer. Its clients stay, and fail to authenticate. */
  async removeFederation(issuer: string, actor: string): Promise<Removal<Federation> | undefined> {
    const removal = await this.#db.lockedTransaction(WORKLOAD_CONFIG_LOCK, async (tx) => {
      const r = await tx.query<FederationRow>('DELETE FROM federations WHERE issuer = $1 RETURNING *', [issuer]);
      if (!r.rows[0]) return undefined;
      const affectedClients = (await this.#users.activeFederatedClients(issuer, undefined, tx)).map((c) => c.clientId);
      await audit(tx, { actor, action: 'federation.remove', target: issuer, details: { affected_clients: affectedClients } });
      return { removed: federationOf(r.rows[0]), affectedClients };
    });
    if (removal) await this.#announce({ kind: 'federation', key: issuer });
    return removal;
  }

  /** After a commit: this instance re-reads at once; the others on the bus (or, if it is down, by their next re-read). */
  async #announce(change: TrustChange): Promise<void> {
    await this.refresh();
    await this.#bus.publish(TRUST_CHANNEL, JSON.stringify(change)).catch((err: Error) => {
      this.#log.warn({ err: err.message, change }, 'trust configuration: change not announced on the bus; other instances see it by their next re-read');
    });
  }
}

/** Every trust domain and federation added, removed or edited between two copies. */
function changesBetween(before: Copy | undefined, after: Copy): TrustChange[] {
  const changes: TrustChange[] = [];
  const diff = <T extends { updatedAt: Date }>(kind: TrustChange['kind'], a: Map<string, T> | undefined, b: Map<string, T>) => {
    for (const [key, value] of b) {
      const old = a?.get(key);
      if (!old || old.updatedAt.getTime() !== value.updatedAt.getTime()) changes.push({ kind, key });
    }
    for (const key of a?.keys() ?? []) if (!b.has(key)) changes.push({ kind, key });
  };
  diff('trust-domain', before?.trustDomains, after.trustDomains);
  diff('federation', before?.federations, after.federations);
  return changes;
}
