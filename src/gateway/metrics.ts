// /metrics of the forward-auth service: every decision by outcome and reason (a fixed set of label
// values), how long deciding took, and how old the oldest status list in use is.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Outcome = 'allowed' | 'refused' | 'unavailable';
export const REASONS = [
  'ok', 'missing_token', 'invalid_token', 'invalid_dpop_proof', 'use_dpop_nonce', 'insufficient_scope', 'temporarily_unavailable',
  'untrusted_source', 'bad_request', 'bad_path', 'no_route', 'method_not_allowed', 'unsafe_claim',
] as const;
export type Reason = (typeof REASONS)[number];

export function createGatewayMetrics(oldestStatusListAgeSeconds: () => number | undefined) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const decisions = new Counter({ name: 'sigil_verify_decisions_total', help: 'Forward-auth decisions by outcome and reason', labelNames: ['outcome', 'reason'], registers });
  const duration = new Histogram({
    name: 'sigil_verify_duration_seconds', help: 'Time from receiving an authorization request to answering it', registers,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  });
  new Gauge({
    name: 'sigil_verify_status_list_oldest_age_seconds', help: 'Age of the oldest status list copy fetched by this process (0 before any)', registers,
    collect() {
      this.set(oldestStatusListAgeSeconds() ?? 0);
    },
  });
  return {
    registry,
    decided(outcome: Outcome, reason: Reason, startedNs: bigint) {
      decisions.inc({ outcome, reason });
      duration.observe(Number(process.hrtime.bigint() - startedNs) / 1e9);
    },
  };
}
