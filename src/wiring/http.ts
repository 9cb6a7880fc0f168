// HTTP for one server: the two planes' handlers put together into the app (routes.ts lists every route
// of both), the listener on PORT, and /metrics on its own listener when METRICS_PORT is set.
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { clientMetadataProblem, type Provider } from '../oidc/provider.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { ClientStore, NewClient } from '../clients/client-store.js';
import type { KeyRing } from '../keys/key-ring.js';
import { jwksUriProblem, type JwksUriFetcher } from '../outbound/jwks-fetch.js';
import type { ClientRegistrations, InitialAccessTokens } from '../registration/initial-access-tokens.js';
import type { Revocations } from '../revocation/revocations.js';
import type { StatusListPublisher } from '../revocation/status-list.js';
import { adminGate, adminPlane, clientAndKeyAdmin } from '../server/admin-api.js';
import { createApp } from '../server/app.js';
import { answerEveryRequest } from '../server/http-connections.js';
import { closeServer, createHttpServer, listen } from '../server/http-listener.js';
import { metricsEndpoint, metricsListener, type Metrics } from '../server/metrics.js';
import type { Readiness } from '../server/readiness.js';
import { registrationApi } from '../server/registration-api.js';
import { registrationTokenAdmin } from '../server/registration-tokens-api.js';
import type { ResourceServer } from '../server/resource-server.js';
import { statusListRoutes } from '../server/status-lists.js';
import type { StatusStreams } from '../server/status-streams.js';
import type { TokenOutcomes } from '../server/token-outcomes.js';
import type { Db } from '../storage/db.js';
import { trustAdmin, type TrustCandidate } from '../server/trust-admin-api.js';
import type { TrustStore } from '../workload/trust-store.js';
import type { WorkloadAuthDeps } from '../workload/workload-auth.js';
import { clientCertificate } from '../workload/client-certificate.js';

/** the metrics listener serves a scraper or two */
const METRICS_MAX_CONNECTIONS = 64;

export interface HttpDeps {
  config: Config;
  log: Logger;
  db: Db;
  metrics: Metrics;
  outcomes: TokenOutcomes;
  readiness: Readiness;
  keyRing: KeyRing;
  provider: () => Provider;
  clients: ClientStore;
  revocations: Revocations;
  /** the admin's DPoP-bound access token, checked by sigil/verifier as any API would */
  resourceServer: ResourceServer;
  initialAccessTokens: InitialAccessTokens;
  registrations: ClientRegistrations;
  jwksUri: JwksUriFetcher;
  statusPublisher: StatusListPublisher;
  statusStreams: StatusStreams;
  /** the trust configuration (trust domains, federations) */
  trust: TrustStore;
  /** fetches a trust domain's bundle or a federation's keys once before it is added (the trust fetcher); undefined: no check */
  checkTrust?: (what: TrustCandidate) => Promise<string | undefined>;
  /** workload identity client authentication before oidc-provider (src/workload/workload-auth.ts); undefined: not served */
  workload?: WorkloadAuthDeps;
}

export interface Http {
  port: number;
  /** http(s)://127.0.0.1:{port}: where tests and the CLI on this host reach it */
  url: string;
  server: Server;
  /** where /metrics is served when METRICS_PORT is set */
  metricsUrl: string | undefined;
  /** stops both listeners and ends the status streams (an open one would hold the close forever) */
  close(): Promise<void>;
}

const hostForUrl = (host: string) => (host.includes(':') ? `[${host}]` : host);

export async function serveHttp(deps: HttpDeps): Promise<Http> {
  const { config, log, metrics, keyRing } = deps;
  const { issuer } = config;
  // what oidc-provider would refuse to load is refused before it is stored (both planes write clients)
  const metadataProblem = (c: NewClient) => clientMetadataProblem(deps.provider(), c, keyRing.current.active.alg);
  const serveMetrics = metricsEndpoint(metrics, config.metrics.token);
  const clientsAndKeys = clientAndKeyAdmin({
    issuer, db: deps.db, clients: deps.clients, revocations: deps.revocations, keyRing, metadataProblem, log,
    jwksUriProblem: (uri) => jwksUriProblem(uri, config.jwksUri),
    trust: deps.trust,
  });
  const certificates = config.clientCertificates;
  const app = createApp({
    issuer,
    // certificates come from Sigil's own TLS or a configured proxy's header; neither: none are read
    clientCertificate: config.tls || certificates.proxyHeader
      ? clientCertificate({ proxyHeader: certificates.proxyHeader, trustedProxies: certificates.trustedProxies })
      : undefined,
    log,
    metrics,
    metricsEndpoint: config.metrics.port === undefined ? serveMetrics : undefined,
    outcomes: deps.outcomes,
    readiness: deps.readiness,
    provider: deps.provider,
    jwksMaxAge: () => keyRing.jwksMaxAge(),
    registration: registrationApi({
      issuer, db: deps.db, clients: deps.clients, revocations: deps.revocations, initialAccessTokens: deps.initialAccessTokens,
      registrations: deps.registrations, jwksUri: deps.jwksUri, metadataProblem, log,
    }),
    ...(deps.workload ? { workload: deps.workload } : {}),
    statusLists: statusListRoutes({ issuer, ttlSeconds: config.statusListTtlSeconds, publisher: deps.statusPublisher, streams: deps.statusStreams }),
    admin: adminPlane(adminGate({ issuer, clients: deps.clients, resourceServer: deps.resourceServer }), clientsAndKeys.bootstrap, {
      ...clientsAndKeys.operations,
      ...registrationTokenAdmin({ issuer, db: deps.db, initialAccessTokens: deps.initialAccessTokens, log }),
      ...trustAdmin({ trust: deps.trust, destinations: config.jwksUri, check: deps.checkTrust, log }),
    }),
  });

  const onDrop = () => metrics.connectionsDropped.inc();
  const tls = config.tls && { cert: await readFile(config.tls.certFile), key: await readFile(config.tls.keyFile) };
  const server = createHttpServer(app.callback(), config.http, onDrop, tls);
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
  return {
    port,
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    server,
    metricsUrl: metricsPort === undefined ? undefined : `http://${hostForUrl(config.metrics.host)}:${metricsPort}`,
    async close() {
      await Promise.all([closeServer(server), deps.statusStreams.close(), metricsServer && closeServer(metricsServer)]);
    },
  };
}
