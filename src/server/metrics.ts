// Prometheus metrics, one registry per server so two servers can live in one test process.
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    issued: new Counter({ name: 'sigil_tokens_issued_total', help: 'Access tokens issued', labelNames: ['client_id', 'grant_type'], registers: [registry] }),
    refused: new Counter({ name: 'sigil_tokens_refused_total', help: 'Token requests refused', labelNames: ['client_id', 'grant_type', 'error'], registers: [registry] }),
    tokenLatency: new Histogram({
      name: 'sigil_token_endpoint_duration_seconds',
      help: 'Token endpoint latency',
      labelNames: ['status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
