// The admin operations on the trust configuration: SPIFFE trust domains and federated JWT issuers
// (list, add, remove). Lists answer from this instance's copy, so what they show is what this instance
// trusts right now; a removal is by POST body, since an issuer is a URL and has no place in a path.
import type { Context } from 'koa';
import type { Logger } from '../log.js';
import type { DestinationPolicy } from '../outbound/destination.js';
import { parseNewFederation, parseNewTrustDomain, removalKey, TrustInputError } from '../workload/trust-input.js';
import { federationView, trustDomainView, type TrustStore } from '../workload/trust-store.js';
import type { AdminOperation } from './admin-api.js';
import { sendError } from './http-errors.js';
import { parseJsonBody } from './json-body.js';
import type { AdminEndpoint } from './routes.js';

/** What is about to be trusted, for the reachability check. */
export type TrustCandidate =
  | { kind: 'trust-domain'; name: string; bundleEndpoint: string }
  | { kind: 'federation'; issuer: string; jwksUri?: string };

export interface TrustAdminDeps {
  trust: TrustStore;
  /** the destination rules of every URL Sigil fetches (config.jwksUri: JWKS_URI_ALLOWED_HOSTS, JWKS_URI_ALLOW_HTTP_LOOPBACK) */
  destinations: DestinationPolicy;
  /**
   * Fetches what is about to be trusted once (the bundle; the federation's discovery document and keys)
   * and says why it cannot be used, or undefined. Wired to the trust fetcher; without it nothing is fetched.
   */
  check?: (what: TrustCandidate) => Promise<string | undefined>;
  log: Logger;
}

function body(ctx: Context): unknown {
  if (!ctx.is('application/json')) throw new TrustInputError('send a JSON body (Content-Type: application/json)');
  const parsed = parseJsonBody(ctx);
  if (!parsed.ok) throw new TrustInputError(parsed.problem);
  return parsed.value;
}

type TrustEndpoint = Extract<AdminEndpoint, 'list-trust-domains' | 'add-trust-domain' | 'remove-trust-domain' | 'list-federations' | 'add-federation' | 'remove-federation'>;

export function trustAdmin(deps: TrustAdminDeps): Record<TrustEndpoint, AdminOperation> {
  const { trust, log } = deps;

  /** The copy this instance uses, or a 503: past its bound it is not used for anything, not even a list. */
  function current(ctx: Context) {
    const copy = trust.current();
    if (!copy) sendError(ctx, 503, 'temporarily_unavailable', 'the server cannot read its trust configuration; retry shortly', { 'Retry-After': '1' });
    return copy;
  }

  async function reachable(what: TrustCandidate): Promise<void> {
    const problem = await deps.check?.(what);
    if (problem) {
      const field = what.kind === 'trust-domain' ? 'bundle_endpoint' : what.jwksUri ? 'jwks_uri' : 'issuer';
      throw new TrustInputError(`${field} cannot be used now: ${problem}`);
    }
  }

  return {
    'list-trust-domains': async (ctx) => {
      const copy = current(ctx);
      if (copy) ctx.body = copy.trustDomains.map(trustDomainView);
    },
    'add-trust-domain': async (ctx, actor) => {
      const input = parseNewTrustDomain(body(ctx), deps.destinations);
      await reachable({ kind: 'trust-domain', name: input.name, bundleEndpoint: input.bundleEndpoint });
      const added = await trust.addTrustDomain(input, actor);
      if (!added) return sendError(ctx, 409, 'already_exists', `trust domain ${input.name} is configured already; remove it first to change its bundle endpoint`);
      log.info({ action: 'trust_domain.add', actor, trust_domain: added.name, bundle_endpoint: added.bundleEndpoint }, 'trust domain added');
      ctx.status = 201;
      ctx.body = trustDomainView(added);
    },
    'remove-trust-domain': async (ctx, actor) => {
      const name = removalKey(body(ctx), 'name');
      const removal = await trust.removeTrustDomain(name, actor);
      if (!removal) return sendError(ctx, 404, 'not_found', `no trust domain ${JSON.stringify(name.slice(0, 300))} is configured`);
      log.info({ action: 'trust_domain.remove', actor, trust_domain: name, affected_clients: removal.affectedClients.length }, 'trust domain removed');
      ctx.body = { removed: trustDomainView(removal.removed), affected_clients: removal.affectedClients };
    },
    'list-federations': async (ctx) => {
      const copy = current(ctx);
      if (copy) ctx.body = copy.federations.map(federationView);
    },
    'add-federation': async (ctx, actor) => {
      const input = parseNewFederation(body(ctx), deps.destinations);
      await reachable({ kind: 'federation', issuer: input.issuer, ...(input.jwksUri ? { jwksUri: input.jwksUri } : {}) });
      const added = await trust.addFederation(input, actor);
      if (!added) return sendError(ctx, 409, 'already_exists', `a federation with issuer ${input.issuer} is configured already; remove it first to change it`);
      log.info({ action: 'federation.add', actor, issuer: added.issuer }, 'federation added');
      ctx.status = 201;
      ctx.body = federationView(added);
    },
    'remove-federation': async (ctx, actor) => {
      const issuer = removalKey(body(ctx), 'issuer');
      const removal = await trust.removeFederation(issuer, actor);
      if (!removal) return sendError(ctx, 404, 'not_found', `no federation with issuer ${JSON.stringify(issuer.slice(0, 300))} is configured`);
      log.info({ action: 'federation.remove', actor, issuer, affected_clients: removal.affectedClients.length }, 'federation removed');
      ctx.body = { removed: federationView(removal.removed), affected_clients: removal.affectedClients };
    },
  };
}
