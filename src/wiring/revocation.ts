// Revocation for one server: the revocation list every instance holds, the status lists gateways
// check offline, the streams that announce their changes, and the fan-out that keeps them in step.
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { ClientStore } from '../clients/client-store.js';
import { RevocationList } from '../revocation/revocation-list.js';
import { Revocations } from '../revocation/revocations.js';
import { StatusListFanOut } from '../revocation/status-fanout.js';
import { RETIRE_AFTER_SECONDS, StatusIndexAllocator, StatusListPublisher, type StatusListSigner } from '../revocation/status-list.js';
import { reconcileRecentRevocations, StatusListStore } from '../revocation/status-list-store.js';
import type { Metrics } from '../server/metrics.js';
import { statusListUri } from '../server/status-lists.js';
import { StatusStreams } from '../server/status-streams.js';
import type { Db } from '../storage/db.js';
import type { FastStore } from '../storage/fast-store.js';
import { MAX_ACCESS_TOKEN_TTL_SECONDS } from '../tokens/access-tokens.js';
import type { TokenEventLog } from '../tokens/token-events.js';

/** status lists group tokens by 15-minute expiry windows */
const STATUS_LIST_WINDOW_SECONDS = 900;

export interface RevocationDeps {
  config: Config;
  db: Db;
  fast: FastStore;
  clients: ClientStore;
  /** the issuance log: revoking flushes it, and its late records change lists */
  events: TokenEventLog;
  metrics: Metrics;
  statusSigner: () => StatusListSigner;
  log: Logger;
}

export async function startRevocation({ config, db, fast, clients, events, metrics, statusSigner, log }: RevocationDeps) {
  const revocationList = new RevocationList(db, fast, log);
  await revocationList.start();
  // status lists: indices handed out at issuance, bits set by revocations, changes announced
  const statusLists = new StatusListStore(db, RETIRE_AFTER_SECONDS);
  const statusIndices = new StatusIndexAllocator(statusLists, STATUS_LIST_WINDOW_SECONDS);
  const statusPublisher = new StatusListPublisher(statusLists, config.issuer, config.statusListTtlSeconds, statusSigner);
  const statusStreams = new StatusStreams({
    ...config.statusStreams,
    liveListIds: () => statusPublisher.listIds(),
    uriOf: (id) => statusListUri(config.issuer, id),
    metrics,
  });
  const fanOut = new StatusListFanOut({
    bus: fast,
    local: (lists) => {
      statusPublisher.invalidate(lists);
      statusStreams.announce(lists);
    },
    reconcile: () => reconcileRecentRevocations(db),
  });
  revocationList.onEvent((e) => {
    if (e.kind === 'client_revoked' || e.kind === 'client_keys_changed') clients.invalidate(e.target);
    if (e.kind !== 'client_keys_changed') fanOut.changedHere(e.lists);
  });
  events.onLateRevocations = (lists) => fanOut.changedForAll(lists);
  fanOut.start();
  const revocations = new Revocations(revocationList, clients, log, MAX_ACCESS_TOKEN_TTL_SECONDS, () => events.flush());
  return {
    revocationList, revocations, statusIndices, statusPublisher, statusStreams,
    /** the streams end with the HTTP server (an open one would hold its close); this stops the rest */
    close() {
      fanOut.stop();
      revocationList.stop();
    },
  };
}
