// Wires one Sigil server: config → storage → keys → revocation → provider → HTTP. Each step is a small
// module of src/wiring/ returning what it built and how to close it; the domain logic is in the domain
// folders. No module-level state: two servers can run in one process (tests do).
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { ADMIN_SCOPE, adminAudience } from './clients/admin-clients.js';
import { CLIENT_SIGNING_ALGS, jwksProblems } from './clients/client-keys.js';
import { ClientStore, type ClientRecord } from './clients/client-store.js';
import { SIGNING_ALGS } from './keys/algorithms.js';
import type { KeySnapshot } from './keys/key-ring.js';
import { WORKLOAD_AUTH_METHODS } from './oidc/discovery.js';
import { clientMetadata, createProvider } from './oidc/provider.js';
import { serverNonces } from './oidc/server-nonces.js';
import { JwksUriFetcher } from './outbound/jwks-fetch.js';
import { isAccessTokenRevoked } from './revocation/revocation-list.js';
import { ClientRegistrations, InitialAccessTokens } from './registration/initial-access-tokens.js';
import { createMetrics } from './server/metrics.js';
import { createResourceServer } from './server/resource-server.js';
import { tokenOutcomes } from './server/token-outcomes.js';
import type { Db } from './storage/db.js';
import { accessTokenVerifier } from './tokens/access-tokens.js';
import { DelegationChains } from './tokens/delegation-chain.js';
import { DpopProofVerifier } from './tokens/dpop-proof.js';
import type { TokenDecisions } from './tokens/introspection.js';
import { pruneRefreshTokens } from './tokens/refresh-token-store.js';
import { RefreshTokens } from './tokens/refresh-tokens.js';
import { TokenEventLog } from './tokens/token-events.js';
import { pruneLineage } from './tokens/token-lineage.js';
import { serveHttp, type Http } from './wiring/http.js';
import { startHousekeeping } from './wiring/jobs.js';
import { openKeys } from './wiring/keys.js';
import { startRevocation } from './wiring/revocation.js';
import { openStorage, watchStorage } from './wiring/storage.js';
import { startWorkloadState } from './wiring/workload.js';
import type { WorkloadAuthDeps } from './workload/workload-auth.js';

export { openDatabase } from './wiring/storage.js';

/** `url` (loopback, the port it listens on), `server`, and `metricsUrl` when METRICS_PORT is set */
export interface RunningSigil extends Pick<Http, 'url' | 'server' | 'metricsUrl'> {
  db: Db;
  close(): Promise<void>;
}

/** oidc-provider's view of a client, built once per cached record (it is asked on every request) */
function clientMetadataCache() {
  const cache = new WeakMap<object, { alg: string; metadata: never }>();
  return (record: ClientRecord, alg: string): never => {
    const hit = cache.get(record);
    if (hit && hit.alg === alg) return hit.metadata;
    const metadata = clientMetadata(record, alg) as never;
    cache.set(record, { alg, metadata });
    return metadata;
  };
}

export async function startSigil(config: Config, log: Logger): Promise<RunningSigil> {
  const storage = await openStorage(config, log);
  const { db, fast, replay } = storage;
  const clients = new ClientStore(db, fast);
  const ownKeys = await openKeys(config, db, fast, log);
  const { keyRing, nonceSecret, cookieKey } = ownKeys;
  const events = new TokenEventLog(db, log);
  const metrics = createMetrics({ clientIds: config.metrics.clientIds });
  const revocation = await startRevocation({ config, db, fast, clients, events, metrics, statusSigner: ownKeys.statusSigner, log });
  const { revocationList, revocations, statusIndices } = revocation;
  // trust domains, federations and the workload-client index (trust-fetch and the authenticators use them)
  const workloadState = await startWorkloadState({ config, db, fast, clients, log });

  // one per process, outliving provider rebuilds: it keeps the proof keys services present
  const tokenProofs = new DpopProofVerifier({
    algorithms: CLIENT_SIGNING_ALGS,
    ...(config.dpopRequireNonce ? { nonces: serverNonces(nonceSecret, 'DPoP') } : {}),
  });
  const statusListPrefix = `${config.issuer}/status-lists/`;
  const outcomes = tokenOutcomes(events, metrics, statusListPrefix, log);
  const verify = accessTokenVerifier({ issuer: config.issuer, publicJwks: () => keyRing.current.publicJwks, algorithms: [...SIGNING_ALGS] });
  const tokens: TokenDecisions = { verify, revocationList, revocations, statusListPrefix };
  const chains = new DelegationChains(db, statusListPrefix);
  const refreshTokens = new RefreshTokens(db, revocationList, revocations, config.refreshTokenTtl, statusListPrefix, chains);
  // one per process, outliving provider rebuilds: its cache is what keeps partners' jwks_uri from being hammered
  const jwksUri = new JwksUriFetcher(config.jwksUri, log, { validate: jwksProblems });
  const initialAccessTokens = new InitialAccessTokens(db);
  const metadataOf = clientMetadataCache();

  // how workload-bound clients authenticate (src/workload/workload-auth.ts)
  const workload: WorkloadAuthDeps = {
    ...workloadState.parts,
    issuer: config.issuer,
    svidMaxLifetimeSeconds: config.svidMaxLifetimeSeconds,
    findClient: (id) => clients.find(id),
    onRefused: (ctx, r) => outcomes.refused(ctx, r),
    log,
  };

  // oidc-provider reads keys only at construction: a key change builds a new one, swapped in behind
  // the Koa app (requests in flight finish on the old one)
  const buildProvider = (keys: KeySnapshot) => createProvider({
    config,
    jwksUri,
    signing: { alg: keys.active.alg, kid: keys.active.kid },
    privateJwks: keys.privateJwks,
    storage: { db, replay, metadataOf: (r) => metadataOf(r, keyRing.current.active.alg), isClientRevoked: (id) => revocationList.isClientRevoked(id) },
    proofs: tokenProofs,
    statusIndices,
    tokens,
    refreshTokens,
    chains,
    clients,
    nonceSecret,
    cookieKeys: [cookieKey],
    log,
    onIssued: (ctx, t) => outcomes.issued(ctx, t),
    onRefused: (ctx, r) => outcomes.refused(ctx, r),
    workloadAuthMethods: WORKLOAD_AUTH_METHODS,
  });
  let provider = buildProvider(keyRing.current);
  keyRing.onChange((keys) => {
    provider = buildProvider(keys);
  });

  const readiness = await watchStorage(storage, log);
  const http = await serveHttp({
    config, log, db, metrics, outcomes, readiness, keyRing, provider: () => provider, clients, revocations,
    resourceServer: createResourceServer({
      issuer: config.issuer,
      audience: adminAudience(config.issuer),
      scopes: [ADMIN_SCOPE],
      tokenAlgorithms: SIGNING_ALGS,
      proofAlgorithms: CLIENT_SIGNING_ALGS,
      publicJwks: () => keyRing.current.publicJwks,
      isRevoked: (claims) => isAccessTokenRevoked(revocationList, claims),
      replay,
    }),
    initialAccessTokens,
    registrations: new ClientRegistrations(db),
    jwksUri,
    statusPublisher: revocation.statusPublisher,
    statusStreams: revocation.statusStreams,
    trust: workloadState.trust,
    checkTrust: workloadState.check,
    workload,
  });
  // forget what can no longer matter (expired revocations, retired status lists, dead initial access tokens)
  const housekeeping = startHousekeeping([
    () => revocationList.store.prune(),
    () => revocation.statusPublisher.retire(),
    () => pruneRefreshTokens(db),
    () => initialAccessTokens.prune(),
    () => pruneLineage(db),
  ]);
  log.info({
    port: http.port, issuer: config.issuer, storage: db.kind, fast: fast.kind, kid: keyRing.current.active.kid,
    tls: config.tls !== undefined, clientCertificates: config.tls ? 'tls' : config.clientCertificates.proxyHeader ? 'proxy-header' : 'none',
  }, 'sigil listening');

  let closing: Promise<void> | undefined;
  return {
    url: http.url,
    server: http.server,
    metricsUrl: http.metricsUrl,
    db,
    close() {
      closing ??= (async () => {
        await http.close();
        readiness.stop();
        housekeeping.close();
        revocation.close();
        workloadState.close();
        ownKeys.close();
        await events.close().catch(() => {});
        await storage.close();
      })();
      return closing;
    },
  };
}
