// Workload identity for one server: the trust configuration (TrustStore: an in-memory copy of
// trust_domains and federations, re-read on the bus and every half second), what it says fetched and
// kept current (FetchedWorkloadTrust: SPIFFE bundles and federation keys, refreshed in the
// background), the index of workload-bound clients, and what the admin API checks before it trusts
// something new. Returns them, the parts workload authentication reads, and the closer.
import type { ClientStore } from '../clients/client-store.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { TrustCandidate } from '../server/trust-admin-api.js';
import type { Db } from '../storage/db.js';
import type { FastStore } from '../storage/fast-store.js';
import { FetchedWorkloadTrust, trustCandidateProblem } from '../workload/trust.js';
import { TrustStore } from '../workload/trust-store.js';
import type { WorkloadAuthDeps } from '../workload/workload-auth.js';
import { WorkloadClients } from '../workload/workload-clients.js';
import { certificateAuthenticator, loadClientCas } from '../workload/certificate-auth.js';
import { startHousekeeping } from './jobs.js';

/** how often the background job looks for bundles due a refresh (each is fetched per its own hint) */
const BUNDLE_REFRESH_TICK_MS = 5_000;

export interface WorkloadState {
  /** TrustConfig for the fetchers; also the admin API's store */
  trust: TrustStore;
  /** WorkloadClientIndex for the authenticators */
  workloadClients: WorkloadClients;
  /** bundles and federation keys, current */
  fetched: FetchedWorkloadTrust;
  /** the admin API's reachability check of a trust domain or federation about to be added */
  check: (what: TrustCandidate) => Promise<string | undefined>;
  /** what workload authentication reads */
  parts: Pick<WorkloadAuthDeps, 'trust' | 'clients' | 'federationsConfigured' | 'certificates'>;
  close(): void;
}

export async function startWorkloadState(deps: { config: Config; db: Db; fast: FastStore; clients: ClientStore; log: Logger }): Promise<WorkloadState> {
  const { config, log } = deps;
  const trust = new TrustStore(deps.db, deps.fast, log, deps.clients);
  await trust.start();
  const workloadClients = new WorkloadClients(deps.clients);
  const fetched = new FetchedWorkloadTrust(trust, config.jwksUri, config.spiffeBundles, log);
  // tls_client_auth chains to TLS_CLIENT_CA_FILE only; X.509-SVIDs to their trust domain's bundle only
  const certificates = certificateAuthenticator({ clientCas: await loadClientCas(config.clientCertificates.caFile), trust: fetched });
  const refresh = startHousekeeping([() => fetched.refreshDue()], BUNDLE_REFRESH_TICK_MS);
  return {
    trust,
    workloadClients,
    fetched,
    check: (what) => trustCandidateProblem(what, config.jwksUri, config.spiffeBundles, log),
    parts: {
      trust: fetched,
      clients: workloadClients,
      // a jwt-bearer assertion is parsed for its iss only while some federation is configured
      federationsConfigured: () => trust.hasFederations(),
      certificates,
    },
    close: () => {
      refresh.close();
      trust.close();
    },
  };
}
