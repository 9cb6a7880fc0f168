// Wires one Sigil server: config → storage → keys → provider → app → listening socket.
// No module-level state: two servers can run in one process (tests do).
import { mkdir } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { sharedSecret } from './keys/signing-keys.js';
import { loadKek } from './keys/key-encryption.js';
import { KeyRing, type KeySnapshot } from './keys/key-ring.js';
import { adminAudience } from './clients/admin-clients.js';
import { clientMetadata, createProvider } from './oidc/provider.js';
import { createResourceServer } from './server/resource-server.js';
import { adminApi } from './server/admin-api.js';
import { createApp } from './server/app.js';
import { answerEveryRequest } from './server/http-connections.js';
import { createMetrics, metricsEndpoint, metricsListener } from './server/metrics.js';
import { closeServer, createHttpServer, listen } from './server/http-listener.js';
import { StatusStreams } from './server/status-streams.js';
import { Readiness, type Probe } from './server/readiness.js';
import { tokenOutcomes } from './server/token-outcomes.js';
import { ClientStore, type ClientRecord } from './clients/client-store.js';
import { createPgDb, createPgliteDb, type Db } from './storage/db.js';
import { createMemoryStore, createRedisStore, type FastStore } from './storage/fast-store.js';
import { migrate } from './storage/migrate.js';
import { serverNonces } from './oidc/server-nonces.js';
import { DpopProofVerifier } from './tokens/dpop-proof.js';
import { redisReplayGuard, sqlReplayGuard } from './storage/replay-guard.js';
import { ReplayGenerations } from './storage/replay-generations.js';
import { TokenEventLog } from './tokens/token-events.js';
import { importJWK, type CryptoKey } from 'jose';
import { accessTokenVerifier } from './tokens/access-tokens.js';
import { isAccessTokenRevoked, type TokenDecisions } from './tokens/introspection.js';
import { RevocationList } from './revocation/revocation-list.js';
import { RefreshTokens } from './tokens/refresh-tokens.js';
import { pruneRefreshTokens } from './tokens/refresh-token-store.js';
import { DelegationChains } from './tokens/delegation-chain.js';
import { pruneLineage } from './tokens/token-lineage.js';
import { Revocations } from './revocation/revocations.js';
import { reconcileRecentRevocations, StatusIndexAllocator, StatusListPublisher, statusTokenLifetime } from './revocation/status-list.js';
import { statusListRoutes, statusListUri } from './server/status-lists.js';
import { CLIENT_SIGNING_ALGS, jwksProblems } from './clients/client-keys.js';
import { JwksUriFetcher, jwksUriProblem } from './outbound/jwks-fetch.js';
import { registrationApi, registrationTokenAdmin } from './server/registration-api.js';
import { ClientRegistrations, InitialAccessTokens } from './registration/initial-access-tokens.js';

/** status lists group tokens by 15-minute expiry windows */
const STATUS_LIST_WINDOW_SECONDS = 900;
/** the metrics listener serves a scraper or two */
const METRICS_MAX_CONNECTIONS = 64;
/** algorithms Sigil's own keys may use; the JWKS decides which key verifies what */
const SIGNING_ALGS = ['ES256', 'EdDSA', 'PS256'];

/** oidc-provider's view of a client, built once per cached record (it is asked on every request) */
const metadataCache = new WeakMap<object, { alg: string; metadata: never }>();
function metadataOf(record: ClientRecord, alg: string): never {
  const hit = metadataCache.get(record);
  if (hit && hit.alg === alg) return hit.metadata;
  const metadata = clientMetadata(record, alg) as never;
  metadataCache.set(record, { alg, metadata });
  return metadata;
}

async function signerOf(keys: KeySnapshot) {
  const { kid, alg, privateJwk } = keys.active;
  return { kid, alg, key: (await importJWK(privateJwk, alg)) as CryptoKey };
}

export interface RunningSigil {
  url: string;
  server: Server;
  /** where /metrics is served when METRICS_PORT is set */
  metricsUrl: string | undefined;
  db: Db;
  close(): Promise<void>;
}

const hostForUrl = (host: string) => (host.includes(':') ? `[${host}]` : host);

export async function openDatabase(config: Config, log: Logger): Promise<Db> {
  if (config.databaseUrl) return createPgDb(config.databaseUrl);
  await mkdir(config.dataDir, { recursive: true });
  log.info({ dataDir: config.dataDir }, 'no DATABASE_URL: using embedded Postgres (PGlite)');
  return createPgliteDb(config.dataDir);
}

/** Migrations run over DATABASE_DIRECT_URL when it is set, on a connection of their own closed afterwards. */
async function migrateDatabase(config: Config, db: Db): Promise<string[]> {
  if (!config.databaseDirectUrl) return migrate(db);
  const direct = createPgDb(config.databaseDirectUrl, 1);
  try {
    return await migrate(direct);
  } finally {
    await direct.close();
  }
}

export async function startSigil(config: Config, log: Logger): Promise<RunningSigil> {
  const db = await openDatabase(config, log);
  const applied = await migrateDatabase(config, db);
  if (applied.length) log.info({ migrations: applied }, 'migrations applied');

  const redis = config.redisUrl ? createRedisStore(config.redisCluster ?? config.redisUrl, config.redisPrefix, log) : undefined;
  const fast: FastStore = redis ?? createMemoryStore(log);
  if (!config.redisUrl) {
    log.warn('no REDIS_URL: using an in-process stand-in; run a single instance only (replay records stay in Postgres)');
  }
  // replay records in Redis come with the generation that tells when Redis lost them
  const generations = redis && new ReplayGenerations(redis, db, log);
  const replay = redis && generations ? redisReplayGuard(redis, generations) : sqlReplayGuard(db);
  const clients = new ClientStore(db, fast);
  const revocationList = new RevocationList(db, fast, log);
  await revocationList.start();
  // how long every instance has to notice a staged key before it may sign (a bus message is
  // usually instant; the periodic reload is the fallback)
  const keyPropagation = Math.min(30, Math.max(1, config.jwksMaxAgeSeconds));
  const kek = await loadKek({ kek: config.kek, keysDir: config.keysDir }, log);
  const keyRing = new KeyRing(db, kek, config.signingAlg, {
    jwksMaxAgeSeconds: config.jwksMaxAgeSeconds,
    propagationSeconds: keyPropagation,
    // what a key signed (access tokens, status list tokens) must stay verifiable until it expires
    retireAfterSeconds: Math.max(config.accessTokenTtl, statusTokenLifetime(config.statusListTtlSeconds)) + keyPropagation,
  }, fast, log);
  await keyRing.start();
  let statusSigner = await signerOf(keyRing.current);
  keyRing.onChange((s) => void signerOf(s).then((signer) => (statusSigner = signer)));
  const nonceSecret = await sharedSecret(db, 'dpop_nonce');
  // one per process, outliving provider rebuilds: it keeps the proof keys services present
  const tokenProofs = new DpopProofVerifier({
    algorithms: CLIENT_SIGNING_ALGS,
    ...(config.dpopRequireNonce ? { nonces: serverNonces(nonceSecret, 'DPoP') } : {}),
  });
  // the admin API hands out no nonces
  const adminProofs = new DpopProofVerifier({ algorithms: CLIENT_SIGNING_ALGS, maxKeys: 100 });
  const cookieKey = (await sharedSecret(db, 'cookie')).toString('base64url');
  const events = new TokenEventLog(db, log);
  const metrics = createMetrics({ clientIds: config.metrics.clientIds });
  const statusListPrefix = `${config.issuer}/status-lists/`;
  const outcomes = tokenOutcomes(events, metrics, statusListPrefix, log);
  const serveMetrics = metricsEndpoint(metrics, config.metrics.token);

  // status lists: indices handed out at issuance, bits set by revocations, changes announced
  const statusIndices = new StatusIndexAllocator(db, STATUS_LIST_WINDOW_SECONDS);
  const statusPublisher = new StatusListPublisher(db, config.issuer, config.statusListTtlSeconds, () => statusSigner);
  const statusStreams = new StatusStreams({
    ...config.statusStreams,
    liveListIds: () => statusPublisher.listIds(),
    uriOf: (id) => statusListUri(config.issuer, id),
    metrics,
  });
  const listsChanged = (lists: string[] | undefined) => {
    statusPublisher.invalidate(lists);
    statusStreams.announce(lists);
  };
  revocationList.onEvent((e) => {
    if (e.kind === 'client_revoked' || e.kind === 'client_keys_changed') clients.invalidate(e.target);
    if (e.kind !== 'client_keys_changed') listsChanged(e.lists);
  });
  events.onLateRevocations = (lists) => {
    listsChanged(lists);
    void fast.publish('status-lists', JSON.stringify(lists)).catch(() => {});
  };
  // messages may have been lost while Redis was away
  fast.onReconnect(() => listsChanged(undefined));
  const reconcile = setInterval(() => {
    reconcileRecentRevocations(db).then((lists) => {
      if (!lists.length) return;
      listsChanged(lists);
      void fast.publish('status-lists', JSON.stringify(lists)).catch(() => {});
    }, () => {});
  }, 1000);
  reconcile.unref();
  fast.subscribe('status-lists', (message) => {
    try {
      listsChanged(JSON.parse(message) as string[]);
    } catch {
      listsChanged(undefined);
    }
  });

  const verify = accessTokenVerifier({ issuer: config.issuer, publicJwks: () => keyRing.current.publicJwks, algorithms: SIGNING_ALGS });
  const revocations = new Revocations(revocationList, clients, log, 3600, () => events.flush());
  const tokens: TokenDecisions = { verify, revocationList, revocations, statusListPrefix };
  const chains = new DelegationChains(db, statusListPrefix);
  const refreshTokens = new RefreshTokens(db, revocationList, revocations, config.refreshTokenTtl, statusListPrefix, chains);
  // one per process, outliving provider rebuilds: its cache is what keeps partners' jwks_uri from being hammered
  const jwksUri = new JwksUriFetcher(config.jwksUri, log, { validate: jwksProblems });
  const initialAccessTokens = new InitialAccessTokens(db);
  const registrations = new ClientRegistrations(db);

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
  });
  let provider = buildProvider(keyRing.current);
  keyRing.onChange((keys) => {
    provider = buildProvider(keys);
  });

  const authenticate = createResourceServer({
    audience: adminAudience(config.issuer),
    verify,
    isRevoked: (claims) => isAccessTokenRevoked(revocationList, claims),
    replay,
    proofs: adminProofs,
  });
  const probes: Probe[] = [{ name: 'postgres', ping: () => db.ping() }];
  // a closed connection is known at once, as is the replay state it leaves unverified
  if (config.redisUrl) probes.push({ name: 'redis', ping: () => fast.ping(), healthy: () => fast.isReady() });
  // the periodic check is how every instance learns of a loss another one noticed
  if (generations) probes.push({ name: 'replay', ping: () => generations.check(), healthy: () => generations.ready() });
  // listen only once Redis is connected, so a fresh instance does not start by refusing everything
  if (!(await fast.whenReady(5000))) log.error({ store: 'redis' }, 'redis not reachable at start; refusing tokens until it is');
  await generations?.check().catch((err: Error) => log.error({ store: 'redis', reason: err.message }, 'replay records not verified at start; refusing tokens until they are'));
  const readiness = new Readiness(probes, log);
  await readiness.check();

  const app = createApp({
    issuer: config.issuer,
    log,
    metrics,
    metricsEndpoint: config.metrics.port === undefined ? serveMetrics : undefined,
    outcomes,
    readiness,
    provider: () => provider,
    jwksMaxAge: () => keyRing.jwksMaxAge(),
    admin: adminApi({
      issuer: config.issuer, signingAlg: () => keyRing.current.active.alg, db, clients, revocations, keyRing, provider: () => provider, authenticate, log,
      jwksUriProblem: (uri) => jwksUriProblem(uri, config.jwksUri),
      registrationTokens: registrationTokenAdmin({ issuer: config.issuer, db, initialAccessTokens, log }),
    }),
    registration: registrationApi({
      issuer: config.issuer, signingAlg: () => keyRing.current.active.alg, db, clients, revocations, initialAccessTokens, registrations, jwksUri, provider: () => provider, log,
    }),
    statusLists: statusListRoutes({ issuer: config.issuer, ttlSeconds: config.statusListTtlSeconds, publisher: statusPublisher, streams: statusStreams }),
  });

  // housekeeping: forget what can no longer matter (expired revocations, retired status lists, dead initial access tokens)
  const housekeeping = setInterval(() => {
    void revocationList.store.prune().catch(() => {});
    void statusPublisher.retire().catch(() => {});
    void pruneRefreshTokens(db).catch(() => {});
    void initialAccessTokens.prune().catch(() => {});
    void pruneLineage(db).catch(() => {});
  }, 60_000);
  housekeeping.unref();

  const onDrop = () => metrics.connectionsDropped.inc();
  const server = createHttpServer(app.callback(), config.http, onDrop);
  // every request gets an answer, also those Node's HTTP layer refuses before Koa
  answerEveryRequest(server);
  const port = await listen(server, config.port, config.host);
  // METRICS_PORT: /metrics on its own listener (by default on loopback only), and not on PORT
  const metricsServer = config.metrics.port === undefined ? undefined
    : createHttpServer(metricsListener(serveMetrics), { ...config.http, maxConnections: METRICS_MAX_CONNECTIONS }, onDrop);
  const metricsPort = metricsServer && await listen(metricsServer, config.metrics.port!, config.metrics.host).catch(async (err: Error) => {
    await closeServer(server);
    throw err;
  });
  if (metricsServer) log.info({ port: metricsPort, host: config.metrics.host, tokenRequired: config.metrics.token !== undefined }, 'metrics listening');
  log.info({ port, issuer: config.issuer, storage: db.kind, fast: fast.kind, kid: keyRing.current.active.kid }, 'sigil listening');

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    metricsUrl: metricsPort === undefined ? undefined : `http://${hostForUrl(config.metrics.host)}:${metricsPort}`,
    db,
    close() {
      closing ??= (async () => {
        // streams are ended alongside: an open one would hold the server's close forever (gateways reconnect elsewhere)
        await Promise.all([closeServer(server), statusStreams.close(), metricsServer && closeServer(metricsServer)]);
        readiness.stop();
        clearInterval(housekeeping);
        clearInterval(reconcile);
        revocationList.stop();
        keyRing.stop();
        await events.close().catch(() => {});
        replay.close();
        await fast.close();
        await db.close();
      })();
      return closing;
    },
  };
}
