// Client authentication of workload-bound clients at /token, /introspect and /revoke, done by Sigil
// BEFORE oidc-provider reads the request (mounted in src/server/app.ts after formParameterGuard).
//
// oidc-provider knows such clients as tls_client_auth clients (src/oidc/provider.ts); its mTLS hooks
// accept one only when ctx.state.workload names it. So on success this leaves the verdict there and
// hands oidc-provider a body without client_assertion / client_assertion_type and with client_id =
// the matched client: oidc-provider takes its "no credential" path (methods none / tls_client_auth,
// lib/shared/client_auth.js), finds the client, and the hooks accept. Every other request reaches
// oidc-provider unchanged, and a workload-bound client named there without a verdict (a bare client_id,
// a private_key_jwt assertion for it) is invalid_client: its registered method never matches, or its
// hooks refuse. The grants then read ctx.oidc.client only, so token exchange and refresh work as for
// any client, and the DPoP proof's jti is claimed once by the grant's replay step as always.
import { parse as parseForm, unescape } from 'node:querystring';
import type { Context, Next } from 'koa';
import type { ClientRecord } from '../clients/client-store.js';
import type { Logger } from '../log.js';
import { providerReadable } from '../oidc/body-handoff.js';
import type { Refusal } from '../oidc/provider.js';
import { sendError } from '../server/http-errors.js';
import type { WorkloadAuthOutcome } from './assertion-checks.js';
import { unverifiedIssuer, verifyFederatedJwt } from './federated-jwt.js';
import { verifyJwtSvid } from './jwt-svid.js';
import {
  JWT_BEARER_ASSERTION_TYPE, JWT_SPIFFE_ASSERTION_TYPE,
  type CertificateAuthenticator, type PresentedCertificate, type WorkloadClientIndex, type WorkloadTrust, type WorkloadVerdict,
} from './types.js';

/** The endpoints that authenticate clients. */
export type ClientAuthEndpoint = 'token' | 'introspection' | 'revocation';

export interface WorkloadAuthDeps {
  issuer: string;
  trust: WorkloadTrust;
  clients: WorkloadClientIndex;
  /** SVID_MAX_LIFETIME */
  svidMaxLifetimeSeconds: number;
  /**
   * Whether any federation is configured now (kept current by the trust store's onChange). While none
   * is, a jwt-bearer assertion is private_key_jwt and passes untouched without being parsed here.
   */
  federationsConfigured: () => boolean;
  /** mTLS's authenticator (absent: certificate-bound clients are not served by this middleware) */
  certificates?: CertificateAuthenticator;
  /** a client by id (the certificate path: client_id names the client the certificate must authenticate) */
  findClient?: (clientId: string) => Promise<ClientRecord | undefined>;
  /** a refusal at /token: counted, logged and recorded like every other (TokenOutcomes.refused) */
  onRefused: (ctx: Context, refusal: Refusal) => void;
  log: Logger;
  now?: () => number;
}

/** the parameters this middleware consumes; what oidc-provider gets instead is client_id alone */
const CONSUMED = new Set(['client_assertion', 'client_assertion_type', 'client_id']);
const SPIFFE_MARK = 'jwt-spiffe';

/**
 * The Koa middleware. `endpointOf`: which client-authenticating endpoint the request is for
 * (undefined: not one of them; the request passes untouched).
 */
export function workloadAuthentication(deps: WorkloadAuthDeps, endpointOf: (ctx: Context) => ClientAuthEndpoint | undefined) {
  // not async: the exit every ordinary request takes allocates nothing (no promise of its own, no parse)
  return function workloadAuth(ctx: Context, next: Next): Promise<void> {
    const endpoint = endpointOf(ctx);
    if (endpoint === undefined) return next();
    const raw = ctx.state.rawBody as string | undefined;
    const certificate = ctx.state.clientCertificate as PresentedCertificate | undefined;
    // the cheap exit: no SVID type in the body, no federation configured, no certificate (a jwt-spiffe
    // type spelled with percent-escaped letters passes here, and oidc-provider refuses its type)
    if (raw === undefined || (!raw.includes(SPIFFE_MARK) && !deps.federationsConfigured() && !(certificate && deps.certificates))) return next();
    return authenticate(ctx, next, endpoint, raw, certificate);
  };

  async function authenticate(ctx: Context, next: Next, endpoint: ClientAuthEndpoint, raw: string, certificate: PresentedCertificate | undefined): Promise<void> {
    if (!ctx.is('application/x-www-form-urlencoded')) return next();

    const form = parseForm(raw);
    const type = form.client_assertion_type;
    const assertion = form.client_assertion;
    const clientId = form.client_id;
    // a duplicated parameter is oidc-provider's to refuse (invalid_request), as for any client
    if (Array.isArray(type) || Array.isArray(assertion) || Array.isArray(clientId)) return next();

    let outcome: WorkloadAuthOutcome | undefined;
    if (type === JWT_SPIFFE_ASSERTION_TYPE) {
      outcome = typeof assertion === 'string' && assertion !== ''
        ? await verifyJwtSvid(assertion, clientId, { issuer: deps.issuer, trust: deps.trust, clients: deps.clients, maxLifetimeSeconds: deps.svidMaxLifetimeSeconds, now: deps.now })
        : { ok: false, kind: 'refused', problem: 'client_assertion (a JWT-SVID) is missing' };
    } else if (type === JWT_BEARER_ASSERTION_TYPE) {
      if (typeof assertion !== 'string' || !deps.federationsConfigured()) return next();
      const iss = unverifiedIssuer(assertion);
      if (iss === undefined) return next();
      let federation;
      try {
        federation = await deps.trust.federation(iss);
      } catch {
        outcome = { ok: false, kind: 'unavailable', problem: 'the trusted issuers cannot be read now' };
      }
      // not a federation: a private_key_jwt assertion (iss = sub = a client id), oidc-provider's as today
      if (!outcome && !federation) return next();
      outcome ??= await verifyFederatedJwt(assertion, federation!, clientId, { issuer: deps.issuer, trust: deps.trust, clients: deps.clients, now: deps.now });
    } else if (type === undefined && assertion === undefined && certificate && deps.certificates && deps.findClient && typeof clientId === 'string') {
      outcome = await certificateOutcome(deps, clientId, certificate);
      if (outcome === undefined) return next();
    } else {
      // another assertion type, or none and no certificate: oidc-provider answers as it does today
      return next();
    }

    if (!outcome.ok) return refuse(ctx, deps, endpoint, outcome, form.grant_type);
    ctx.state.workload = outcome.verdict satisfies WorkloadVerdict;
    handOver(ctx, raw, outcome.verdict.clientId);
    return next();
  }
}

/** The certificate path: only for a client_id naming a certificate-bound workload client; undefined: not ours. */
async function certificateOutcome(deps: WorkloadAuthDeps, clientId: string, certificate: PresentedCertificate): Promise<WorkloadAuthOutcome | undefined> {
  let client: ClientRecord | undefined;
  try {
    client = await deps.findClient!(clientId);
  } catch {
    return { ok: false, kind: 'unavailable', problem: 'the clients cannot be read now' };
  }
  const kind = client?.workload?.kind;
  if (!client || client.status !== 'active' || (kind !== 'tls' && kind !== 'self-signed-tls' && kind !== 'spiffe')) return undefined;
  let answer: Awaited<ReturnType<CertificateAuthenticator['authenticate']>>;
  try {
    answer = await deps.certificates!.authenticate(client, certificate);
  } catch {
    return { ok: false, kind: 'unavailable', problem: 'the client certificate cannot be checked now' };
  }
  if ('problem' in answer) return { ok: false, kind: 'refused', problem: answer.problem };
  // the authenticator answers for the client it was given, and for no other
  if (answer.clientId !== client.clientId) return { ok: false, kind: 'refused', problem: 'the client certificate authenticates another client' };
  return { ok: true, client, verdict: answer };
}

/** 401 invalid_client (RFC 6749 §5.2) or 503 with Retry-After; counted and logged with the reason, never the assertion. */
function refuse(ctx: Context, deps: WorkloadAuthDeps, endpoint: ClientAuthEndpoint, outcome: Extract<WorkloadAuthOutcome, { ok: false }>, grantType: unknown): void {
  if (outcome.kind === 'unavailable') {
    sendError(ctx, 503, 'temporarily_unavailable', `${outcome.problem}; retry shortly`, { 'Retry-After': '1' });
  } else {
    sendError(ctx, 401, 'invalid_client', outcome.problem);
  }
  const error = outcome.kind === 'unavailable' ? 'temporarily_unavailable' : 'invalid_client';
  if (endpoint === 'token') {
    deps.onRefused(ctx, { error, reason: outcome.problem, clientId: undefined, grantType: typeof grantType === 'string' ? grantType : undefined });
  } else {
    deps.log.info({ requestId: ctx.state.requestId, event: `${endpoint}.refused`, error, reason: outcome.problem }, 'client authentication refused');
  }
}

/**
 * The body oidc-provider reads: the request's own parameters, byte for byte, without the credential
 * Sigil consumed and with client_id = the authenticated client. Content-Length follows the new bytes
 * (oidc-provider's body reader compares them).
 */
function handOver(ctx: Context, raw: string, clientId: string): void {
  const kept: string[] = [];
  for (const part of raw.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = unescape((eq === -1 ? part : part.slice(0, eq)).replace(/\+/g, ' '));
    if (!CONSUMED.has(name)) kept.push(part);
  }
  kept.push(`client_id=${encodeURIComponent(clientId)}`);
  const text = kept.join('&');
  const body = Buffer.from(text, 'utf8');
  ctx.state.rawBody = text;
  ctx.req = providerReadable(ctx.req, body);
  ctx.req.headers['content-length'] = String(body.length);
  // a chunked request now has a length: never both (RFC 9112 §6.3)
  delete ctx.req.headers['transfer-encoding'];
}
