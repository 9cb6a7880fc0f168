// Prometheus metrics, one registry per server so two servers can live in one test process.
// Every label has a fixed bound (README, "Metrics"): values a caller or a partner chooses (client ids,
// grant types, error codes) are mapped onto a known set before they become a label.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { GRANT_TYPES as SERVED_GRANT_TYPES } from '../tokens/grant-types.js';

/** the label value of everything outside a label's known set */
export const OTHER = 'other';
const GRANT_TYPES: ReadonlySet<string> = new Set(SERVED_GRANT_TYPES);
/** what the token endpoint answers with: RFC 6749 §5.2, RFC 8707, RFC 9449, and Sigil's 503 */
const TOKEN_ERRORS: ReadonlySet<string> = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
  'invalid_target', 'invalid_dpop_proof', 'use_dpop_nonce', 'temporarily_unavailable', 'server_error',
]);

export const grantLabel = (grantType: string | undefined): string => (grantType !== undefined && GRANT_TYPES.has(grantType) ? grantType : OTHER);
export const errorLabel = (error: string): string => (TOKEN_ERRORS.has(error) ? error : OTHER);

/** The most series each token counter can have, given `clientIds` opted-in clients (see README). */
export function seriesBound(clientIds: number) {
  const grants = GRANT_TYPES.size + 1;
  const errors = TOKEN_ERRORS.size + 1;
  return { issued: grants, refused: grants * errors, clientIssued: clientIds * grants, clientRefused: clientIds * grants * errors };
}

export type StreamRefusal = 'per_address' | 'capacity' | 'shutting_down';
export type StreamEnd = 'client' | 'lifetime' | 'slow_reader' | 'shutdown' | 'store';

export function createMetrics(opts: { clientIds?: readonly string[] } = {}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // only opted-in client ids become labels: self-registered partners would make the series unbounded
  const labelledClients: ReadonlySet<string> = new Set(opts.clientIds ?? []);
  const registers = [registry];
  const issued = new Counter({ name: 'sigil_tokens_issued_total', help: 'Access tokens issued', labelNames: ['grant_type'], registers });
  const refused = new Counter({ name: 'sigil_tokens_refused_total', help: 'Token requests refused', labelNames: ['grant_type', 'error'], registers });
  const clientIssued = new Counter({
    name: 'sigil_client_tokens_issued_total', help: 'Access tokens issued to the clients named in METRICS_CLIENT_IDS', labelNames: ['client_id', 'grant_type'], registers,
  });
  const clientRefused = new Counter({
    name: 'sigil_client_tokens_refused_total', help: 'Token requests refused for the clients named in METRICS_CLIENT_IDS', labelNames: ['client_id', 'grant_type', 'error'], registers,
  });
  return {
    registry,
    tokenLatency: new Histogram({
      name: 'sigil_token_endpoint_duration_seconds',
      help: 'Token endpoint latency',
      labelNames: ['status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    countIssued(clientId: string, grantType: string): void {
      const grant_type = grantLabel(grantType);
      issued.inc({ grant_type });
      if (labelledClients.has(clientId)) clientIssued.inc({ client_id: clientId, grant_type });
    },
    /** `clientId` only for a client that exists: an unverified one is never even looked up */
    countRefused(clientId: string | undefined, grantType: string | undefined, error: string): void {
      const labels = { grant_type: grantLabel(grantType), error: errorLabel(error) };
      refused.inc(labels);
      if (clientId !== undefined && labelledClients.has(clientId)) clientRefused.inc({ client_id: clientId, ...labels });
    },
    statusStreamsOpen: new Gauge({ name: 'sigil_status_streams_open', help: 'Open status-list event streams', registers }),
    statusStreamsRefused: new Counter({
      name: 'sigil_status_streams_refused_total', help: 'Status-list event streams refused (per_address, capacity, shutting_down)', labelNames: ['reason'], registers,
    }),
    statusStreamsEnded: new Counter({
      name: 'sigil_status_streams_ended_total', help: 'Status-list event streams ended (client, lifetime, slow_reader, shutdown, store)', labelNames: ['reason'], registers,
    }),
    connectionsDropped: new Counter({ name: 'sigil_http_connections_dropped_total', help: 'Connections closed at once because HTTP_MAX_CONNECTIONS were open', registers }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

export interface MetricsAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** GET /metrics, wherever it is served: Prometheus text, behind a bearer token when one is configured. */
export function metricsEndpoint(metrics: Metrics, token: string | undefined) {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  const expected = token === undefined ? undefined : digest(token);
  const refuse = (wwwAuthenticate: string, description: string): MetricsAnswer => ({
    status: 401,
    headers: { 'WWW-Authenticate': wwwAuthenticate, 'Content-Type': 'application/json', 'Cache-Control': 'no-store' },
    body: JSON.stringify({ error: 'invalid_token', error_description: description }),
  });
  return async function serveMetrics(authorization: string | undefined): Promise<MetricsAnswer> {
    if (expected !== undefined) {
      const given = /^Bearer +([\x21-\x7e]+) *$/i.exec(authorization ?? '')?.[1];
      // RFC 6750 §3.1: no error code when no credentials were sent
      if (given === undefined) return refuse('Bearer realm="sigil-metrics"', '/metrics requires a bearer token');
      // compared as digests: equal length, constant time
      if (!timingSafeEqual(digest(given), expected)) return refuse('Bearer realm="sigil-metrics", error="invalid_token"', 'wrong metrics token');
    }
    return { status: 200, headers: { 'Content-Type': metrics.registry.contentType, 'Cache-Control': 'no-store' }, body: await metrics.registry.metrics() };
  };
}

/** The request handler of the metrics-only listener (METRICS_PORT): /metrics and nothing else. */
export function metricsListener(serve: ReturnType<typeof metricsEndpoint>) {
  return async function metricsOnly(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0];
    let answer: MetricsAnswer;
    if (path !== '/metrics') answer = jsonError(404, `no endpoint ${req.method} ${path}`);
    else if (req.method !== 'GET' && req.method !== 'HEAD') answer = jsonError(405, `method ${req.method} is not allowed on /metrics`);
    else answer = await serve(req.headers.authorization).catch(() => jsonError(500, 'metrics could not be collected', 'server_error'));
    res.writeHead(answer.status, answer.headers);
    res.end(req.method === 'HEAD' ? undefined : answer.body);
  };
}

function jsonError(status: number, description: string, error = 'invalid_request'): MetricsAnswer {
  return { status, headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, body: JSON.stringify({ error, error_description: description }) };
}
