// The workload-bound clients as the authenticators find them: by the SPIFFE ID of a JWT-SVID or
// X.509-SVID, by the (iss, sub) of a federated JWT. Reads come from Postgres through ClientStore and are
// cached per trust domain / per (issuer, subject) for at most CACHE_MS; every cached answer is dropped
// when ClientStore says a client changed (a `client` bus event, a revocation seen by the revocation
// list, a bus reconnect), so a new client works at once here and on other instances within a second,
// and a revoked one is not returned.
import type { ClientRecord, ClientStore } from '../clients/client-store.js';
import { parseSpiffePattern, spiffeIdMatches, type SpiffeId } from './spiffe-id.js';
import type { WorkloadClientIndex } from './types.js';

/** a lost bus message leaves an answer stale at most this long (the bound for new/revoked clients) */
export const WORKLOAD_CACHE_MS = 1000;
/** keys are partly attacker-chosen (trust domains and subjects of presented credentials): bounded */
const MAX_ENTRIES = 10_000;

interface Entry {
  records: Promise<ClientRecord[]>;
  at: number;
}

export class WorkloadClients implements WorkloadClientIndex {
  readonly #clients: ClientStore;
  readonly #now: () => number;
  readonly #cacheMs: number;
  readonly #bySpiffeDomain = new Map<string, Entry>();
  readonly #byFederated = new Map<string, Entry>();
  /** bumped on every invalidation: a read that started before it is not cached */
  #generation = 0;

  constructor(clients: ClientStore, opts: { cacheMs?: number; now?: () => number } = {}) {
    this.#clients = clients;
    this.#now = opts.now ?? Date.now;
    this.#cacheMs = opts.cacheMs ?? WORKLOAD_CACHE_MS;
    // any client change may add, remove or revoke a binding: the maps are small, drop them whole
    clients.onInvalidate(() => this.invalidate());
  }

  invalidate(): void {
    this.#generation++;
    this.#bySpiffeDomain.clear();
    this.#byFederated.clear();
  }

  async bySpiffeId(id: SpiffeId): Promise<ClientRecord[]> {
    const inDomain = await this.#cached(this.#bySpiffeDomain, id.trustDomain, () => this.#clients.activeSpiffeClients(id.trustDomain));
    return inDomain.filter((c) => {
      if (c.workload?.kind !== 'spiffe') return false;
      const pattern = parseSpiffePattern(c.workload.spiffeId);
      return pattern.ok && spiffeIdMatches(pattern.value, id);
    });
  }

  async byFederatedSubject(issuer: string, subject: string): Promise<ClientRecord[]> {
    const records = await this.#cached(this.#byFederated, `${issuer}\u0000${subject}`, () => this.#clients.activeFederatedClients(issuer, subject));
    return records.filter((c) => c.workload?.kind === 'federated' && c.workload.issuer === issuer && c.workload.subject === subject);
  }

  async #cached(map: Map<string, Entry>, key: string, read: () => Promise<ClientRecord[]>): Promise<ClientRecord[]> {
    const hit = map.get(key);
    if (hit && this.#now() - hit.at < this.#cacheMs) return hit.records;
    const generation = this.#generation;
    const at = this.#now();
    const records = read();
    // concurrent lookups share one read; a failed read is not cached
    if (map.size >= MAX_ENTRIES) map.clear();
    map.set(key, { records, at });
    try {
      const result = (await records).filter((c) => c.status === 'active');
      // a client changed while this read ran: answer it, but do not keep it
      if (generation !== this.#generation && map.get(key)?.records === records) map.delete(key);
      return result;
    } catch (err) {
      if (map.get(key)?.records === records) map.delete(key);
      throw err;
    }
  }
}
