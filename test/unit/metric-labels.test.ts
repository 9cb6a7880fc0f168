// Metric labels are bounded whatever callers and partners choose: thousands of distinct client ids,
// grant types and error strings never make more series than the documented bound, and only the
// client ids an operator opted in (METRICS_CLIENT_IDS) ever appear in /metrics.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { createMetrics, metricsEndpoint, OTHER, seriesBound } from '../../src/server/metrics.js';

const DISTINCT_CLIENTS = 5000;
const GRANTS = ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange', 'refresh_token'];

async function seriesOf(metrics: ReturnType<typeof createMetrics>, name: string) {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  assert.ok(metric, `metric ${name} is registered`);
  return (metric as unknown as { values: { labels: Record<string, string>; value: number }[] }).values;
}

describe('metric labels', () => {
  it(`${DISTINCT_CLIENTS} self-registered clients, invented grant types and errors stay within the series bound`, async () => {
    const listed = ['gateway-1', 'orders'];
    const metrics = createMetrics({ clientIds: listed });
    const clients = Array.from({ length: DISTINCT_CLIENTS }, (_, i) => `partner-${i}-${randomUUID()}`);
    for (const [i, clientId] of clients.entries()) {
      // what a caller may choose: an unknown grant_type, and any error string a code path might produce
      const grant = i % 4 === 3 ? `urn:attacker:${i}` : GRANTS[i % 3]!;
      metrics.countIssued(clientId, grant);
      metrics.countRefused(clientId, grant, i % 5 === 0 ? `made-up-error-${i}` : 'invalid_client');
      metrics.countRefused(undefined, `grant-${i}`, String(400 + (i % 100)));
    }
    for (const clientId of listed) {
      metrics.countIssued(clientId, GRANTS[0]!);
      metrics.countRefused(clientId, `invented-${clientId}`, 'invalid_scope');
    }

    const bound = seriesBound(listed.length);
    const issued = await seriesOf(metrics, 'sigil_tokens_issued_total');
    const refused = await seriesOf(metrics, 'sigil_tokens_refused_total');
    const clientIssued = await seriesOf(metrics, 'sigil_client_tokens_issued_total');
    const clientRefused = await seriesOf(metrics, 'sigil_client_tokens_refused_total');
    assert.ok(issued.length <= bound.issued, `${issued.length} issued series, bound ${bound.issued}`);
    assert.ok(refused.length <= bound.refused, `${refused.length} refused series, bound ${bound.refused}`);
    assert.ok(clientIssued.length <= bound.clientIssued, `${clientIssued.length} per-client issued series, bound ${bound.clientIssued}`);
    assert.ok(clientRefused.length <= bound.clientRefused, `${clientRefused.length} per-client refused series, bound ${bound.clientRefused}`);
    // the bound itself is small and independent of how many clients exist
    assert.ok(bound.issued + bound.refused <= 100, JSON.stringify(bound));

    // nothing is lost: the aggregate counts every request
    const total = (values: { value: number }[]) => values.reduce((n, v) => n + v.value, 0);
    assert.equal(total(issued), DISTINCT_CLIENTS + listed.length);
    assert.equal(total(refused), 2 * DISTINCT_CLIENTS + listed.length);
    assert.deepEqual(new Set(issued.map((v) => v.labels.grant_type)), new Set([...GRANTS, OTHER]));

    // per-client series only for the listed clients; an unlisted id appears nowhere
    assert.deepEqual(new Set(clientIssued.map((v) => v.labels.client_id)), new Set(listed));
    assert.deepEqual(new Set(clientRefused.map((v) => v.labels.client_id)), new Set(listed));
    assert.deepEqual(clientRefused.map((v) => v.labels.grant_type), [OTHER, OTHER]);
    const text = await metrics.registry.metrics();
    assert.ok(!text.includes('partner-'), 'an unlisted client id must never become a label');
    assert.ok(!text.includes('urn:attacker') && !text.includes('made-up-error') && !text.includes('grant-1'), 'caller-chosen values must never become labels');
  });

  it('without METRICS_CLIENT_IDS there is no per-client series at all', async () => {
    const metrics = createMetrics();
    metrics.countIssued('some-client', 'client_credentials');
    metrics.countRefused('some-client', 'client_credentials', 'invalid_scope');
    assert.equal((await seriesOf(metrics, 'sigil_client_tokens_issued_total')).length, 0);
    assert.equal((await seriesOf(metrics, 'sigil_client_tokens_refused_total')).length, 0);
    assert.ok(!(await metrics.registry.metrics()).includes('some-client'));
  });
});

describe('metrics endpoint with METRICS_TOKEN', () => {
  const token = 'm'.repeat(40);
  const serve = metricsEndpoint(createMetrics(), token);

  it('answers the right bearer token with Prometheus text', async () => {
    const answer = await serve(`Bearer ${token}`);
    assert.equal(answer.status, 200);
    assert.match(answer.headers['Content-Type']!, /^text\/plain/);
    assert.match(answer.body, /^# HELP /m);
    assert.equal((await serve(`bearer ${token}`)).status, 200, 'the scheme is case-insensitive (RFC 7235)');
  });

  it('refuses a missing, wrong, truncated or extended token with 401 and a Bearer challenge', async () => {
    for (const authorization of [undefined, '', 'Bearer', `Basic ${token}`, `Bearer ${token.slice(1)}`, `Bearer ${token}x`, `Bearer ${'n'.repeat(40)}`, token]) {
      const answer = await serve(authorization);
      assert.equal(answer.status, 401, `authorization ${JSON.stringify(authorization)}`);
      assert.match(answer.headers['WWW-Authenticate']!, /^Bearer /);
      assert.equal(JSON.parse(answer.body).error, 'invalid_token');
      assert.ok(!answer.body.includes('# HELP'));
    }
  });

  it('without a token it answers anyone', async () => {
    assert.equal((await metricsEndpoint(createMetrics(), undefined)(undefined)).status, 200);
  });
});
