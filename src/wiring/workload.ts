// Workload identity's shared state for one server: the trust configuration (TrustStore: an in-memory
// copy of trust_domains and federations, re-read on the bus and every half second) and the index of
// workload-bound clients the authenticators look up. Returns them and the closer.
import type { ClientStore } from '../clients/client-store.js';
import type { Logger } from '../log.js';
import type { Db } from '../storage/db.js';
import type { FastStore } from '../storage/fast-store.js';
import { TrustStore } from '../workload/trust-store.js';
import { WorkloadClients } from '../workload/workload-clients.js';

export interface WorkloadState {
  /** TrustConfig for the fetchers; also the admin API's store */
  trust: TrustStore;
  /** WorkloadClientIndex for the authenticators */
  workloadClients: WorkloadClients;
  close(): void;
}

export async function startWorkloadState(deps: { db: Db; fast: FastStore; clients: ClientStore; log: Logger }): Promise<WorkloadState> {
  const trust = new TrustStore(deps.db, deps.fast, deps.log, deps.clients);
  await trust.start();
  const workloadClients = new WorkloadClients(deps.clients);
  return { trust, workloadClients, close: () => trust.close() };
}
