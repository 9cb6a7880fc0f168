// The admin plane: what the `sigil` CLI calls. Every route but bootstrap needs a DPoP-bound access
// token of the admin client carrying the admin scope; there is no password or static secret.
// adminGate() is that check, put in front of each operation; the operations on clients and keys are
// here, those on initial access tokens in registration-tokens-api.ts; routes.ts lists them all.
import type { Context } from 'koa';
import { EmbeddedJWK, calculateJwkThumbprint, jwtVerify, type JWK } from 'jose';
import type { Logger } from '../log.js';
import {
  ADMIN_CLIENT_ID, ADMIN_SCOPE, adminAudience, ClientInputError, clientView, parseNewClient,
} from '../clients/admin-clients.js';
import { CLIENT_SIGNING_ALGS } from '../clients/client-keys.js';
import { jwtShapeProblem } from '../input/input-limits.js';
import { VerifierError, type ResourceServer } from './resource-server.js';
import { PROOF_MAX_AGE_SECONDS, PROOF_MAX_SKEW_SECONDS } from '../tokens/dpop-proof.js';
import type { ClientStore, NewClient } from '../clients/client-store.js';
import type { Revocations } from '../revocation/revocations.js';
import type { KeyRing } from '../keys/key-ring.js';
import { jwksProblems } from '../clients/client-keys.js';
import type { Db } from '../storage/db.js';
import { audit } from '../storage/audit-log.js';
import { printableTextProblem } from '../input/printable-text.js';
import { sendError } from './http-errors.js';
import { parseJsonBody } from './json-body.js';
import type { AdminEndpoint, RouteHandler, RouteParams } from './routes.js';
import { TrustInputError } from '../workload/trust-input.js';
import { WORKLOAD_CONFIG_LOCK, type TrustStore } from '../workload/trust-store.js';
import { AUTH_METHOD_OF, bindingsOverlap, bindingTrust } from '../workload/workload-binding.js';
import type { WorkloadBinding } from '../workload/types.js';

/** What an admin route does once the gate let it through: `actor` is the admin client's id. */
export type AdminOperation = (ctx: Context, actor: string, params: RouteParams) => Promise<unknown>;

export interface AdminGateDeps {
  issuer: string;
  clients: ClientStore;
  /** the admin's DPoP-bound token and proof, checked by sigil/verifier (audience, the admin scope, status, replay) */
  resourceServer: ResourceServer;
}

export interface AdminDeps {
  revocations: Revocations;
  keyRing: KeyRing;
  issuer: string;
  db: Db;
  clients: ClientStore;
  /** why oidc-provider would not load this client's metadata, or undefined */
  metadataProblem: (c: NewClient) => Promise<string | undefined>;
  log: Logger;
  /** why a jwks_uri may not be registered (https, no credentials, no internal address), or undefined */
  jwksUriProblem: (uri: string) => string | undefined;
  /** whether a workload client's trust domain or federation is configured (read in the creating transaction) */
  trust: Pick<TrustStore, 'isConfigured'>;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;

/** The request's JSON body: every admin route takes an object (`null` or `[]` would fail reading its fields). */
function jsonBody(ctx: Context): Record<string, unknown> {
  if (!ctx.is('application/json')) throw new ClientInputError('send a JSON body (Content-Type: application/json)');
  const body = parseJsonBody(ctx);
  if (!body.ok) throw new ClientInputError(body.problem);
  if (typeof body.value !== 'object' || body.value === null || Array.isArray(body.value)) throw new ClientInputError('the request body must be a JSON object');
  return body.value as Record<string, unknown>;
}

/**
 * Puts the admin check in front of each operation: no-store answers, the admin's DPoP-bound token
 * (not for bootstrap, which proves its key itself), and the refusals the CLI understands.
 */
export function adminGate(deps: AdminGateDeps) {
  async function requireAdmin(ctx: Context): Promise<string> {
    // the issuer-based URL: what the CLI's proofs name, whatever host the request came in by
    const claims = await deps.resourceServer.verify({ method: ctx.method, url: `${deps.issuer}${ctx.path}`, headers: ctx.headers });
    const client = await deps.clients.find(claims.client_id);
    if (!client || client.status !== 'active' || !client.isAdmin) throw deps.resourceServer.refuse('invalid_token', 'the token\'s client is not an active admin');
    return client.clientId;
  }

  function answer(ctx: Context, err: unknown): void {
    if (err instanceof VerifierError) {
      // in this process only the replay store can be unavailable: the answer of any storage outage
      if (err.code === 'temporarily_unavailable') return sendError(ctx, 503, 'temporarily_unavailable', 'the server cannot reach its storage; retry shortly', { 'Retry-After': '1' });
      // RFC 6750 §3.1: no error in the challenge of a request without a token; the JSON body keeps one
      const error = err.code === 'missing_token' ? 'invalid_token' : err.code;
      return sendError(ctx, err.status, error, err.description, err.headers);
    }
    if (err instanceof ClientInputError) return sendError(ctx, 400, 'invalid_client_metadata', err.message);
    if (err instanceof TrustInputError) return sendError(ctx, 400, 'invalid_request', err.message);
    throw err;
  }

  return {
    /** bootstrap: the one admin route open to a caller with no token yet */
    open(operation: (ctx: Context) => Promise<unknown>): RouteHandler {
      return async (ctx) => {
        ctx.set('Cache-Control', 'no-store');
        try {
          await operation(ctx);
        } catch (err) {
          answer(ctx, err);
        }
      };
    },
    admin(operation: AdminOperation): RouteHandler {
      return async (ctx, params) => {
        ctx.set('Cache-Control', 'no-store');
        try {
          await operation(ctx, await requireAdmin(ctx), params);
        } catch (err) {
          answer(ctx, err);
        }
      };
    },
  };
}

/** The admin operations on clients and signing keys, by endpoint (routes.ts). */
export function clientAndKeyAdmin(deps: AdminDeps) {
  const audience = adminAudience(deps.issuer);

  /** Refuse metadata oidc-provider itself would not load, before it is stored. */
  async function assertProviderAccepts(c: NewClient): Promise<void> {
    const problem = await deps.metadataProblem(c);
    if (problem) throw new ClientInputError(problem);
  }

  async function bootstrap(ctx: Context) {
    if (!LOOPBACK.test(ctx.req.socket.remoteAddress ?? '')) {
      return sendError(ctx, 403, 'access_denied', 'sigil init must run on the server\'s own host (loopback)');
    }
    const body = jsonBody(ctx) as { proof?: unknown };
    let jwk: JWK;
    try {
      if (jwtShapeProblem(body.proof)) throw new Error('shape');
      const { payload, protectedHeader } = await jwtVerify(String(body.proof), EmbeddedJWK, {
        typ: 'sigil-bootstrap+jwt', algorithms: [...CLIENT_SIGNING_ALGS], audience: `${audience}/bootstrap`,
        maxTokenAge: PROOF_MAX_AGE_SECONDS, clockTolerance: PROOF_MAX_SKEW_SECONDS,
      });
      if (typeof payload.iat !== 'number') throw new Error('iat');
      jwk = protectedHeader.jwk as JWK;
    } catch {
      return sendError(ctx, 400, 'invalid_request', 'proof must be a fresh sigil-bootstrap+jwt signed by the admin key');
    }
    const { kty, crv, x, y, n, e } = jwk;
    const publicJwk = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined)) as JWK;
    const kid = (await calculateJwkThumbprint(publicJwk)).slice(0, 16);
    // the admin key passes the same key rules as every other client key (no RSA e = 1, ...)
    const keyProblems = jwksProblems({ keys: [{ ...publicJwk, kid, use: 'sig' }] });
    if (keyProblems.length) return sendError(ctx, 400, 'invalid_request', `the admin key is not acceptable: ${keyProblems.join('; ')}`);
    const created = await deps.clients.create({
      clientId: ADMIN_CLIENT_ID,
      name: 'sigil admin',
      tokenBinding: 'dpop',
      scope: [ADMIN_SCOPE],
      audiences: [audience],
      serves: [],
      grantTypes: ['client_credentials'],
      dpopRequired: true,
      canIntrospect: true,
      isAdmin: true,
      jwks: { keys: [{ ...publicJwk, kid, use: 'sig' }] },
    });
    if (!created) return sendError(ctx, 409, 'already_initialized', 'an admin client exists already; use its key');
    await audit(deps.db, { actor: 'bootstrap', action: 'admin.init', target: ADMIN_CLIENT_ID, details: { kid } });
    deps.log.info({ action: 'admin.init', client_id: ADMIN_CLIENT_ID, kid }, 'admin client created');
    ctx.status = 201;
    ctx.body = clientView(created);
  }

  async function createClient(ctx: Context, actor: string) {
    const input = parseNewClient(jsonBody(ctx), deps.issuer);
    const uriProblem = input.jwksUri && deps.jwksUriProblem(input.jwksUri);
    if (uriProblem) throw new ClientInputError(uriProblem);
    await assertProviderAccepts(input);
    const created = input.workload ? await createWorkloadClient(input, input.workload) : await deps.clients.create(input);
    if (!created) return sendError(ctx, 409, 'invalid_client_metadata', 'client_id collision, retry');
    await audit(deps.db, {
      actor, action: 'client.create', target: created.clientId,
      details: { name: created.name, ...(created.workload ? { workload: created.workload, token_binding: created.tokenBinding } : {}) },
    });
    deps.log.info({ action: 'client.create', actor, client_id: created.clientId }, 'client created');
    ctx.status = 201;
    ctx.body = clientView(created);
  }

  /**
   * A workload-bound client, under the workload lock so that two instances cannot both create
   * overlapping bindings (a credential must match exactly one active client) nor miss a trust
   * domain or federation being removed at the same moment.
   */
  async function createWorkloadClient(input: NewClient, workload: WorkloadBinding) {
    const created = await deps.db.lockedTransaction(WORKLOAD_CONFIG_LOCK, async (tx) => {
      const trust = bindingTrust(workload);
      if (trust && !(await deps.trust.isConfigured(tx, trust))) {
        throw new ClientInputError('trustDomain' in trust
          ? `spiffe_id: trust domain ${trust.trustDomain} is not configured; add it first with \`sigil trust-domains add ${trust.trustDomain} --bundle-endpoint URL\``
          : `federated_subject: issuer ${trust.federation} is not a configured federation; add it first with \`sigil federations add --issuer ${trust.federation}\``);
      }
      const rivals = workload.kind === 'spiffe' && trust && 'trustDomain' in trust ? await deps.clients.activeSpiffeClients(trust.trustDomain, tx)
        : workload.kind === 'federated' ? await deps.clients.activeFederatedClients(workload.issuer, workload.subject, tx) : [];
      const clash = rivals.find((c) => c.workload && bindingsOverlap(c.workload, workload));
      if (clash) {
        throw new ClientInputError(workload.kind === 'spiffe'
          ? `spiffe_id ${workload.spiffeId} overlaps the SPIFFE ID ${(clash.workload as { spiffeId: string }).spiffeId} of active client ${clash.clientId}: one SVID must match exactly one client`
          : `federated_subject overlaps active client ${clash.clientId} (same issuer and subject, and no required claim that tells them apart): one token must match exactly one client`);
      }
      return deps.clients.create(input, tx);
    });
    // announced again after the commit: the event ClientStore sent inside the transaction may be read before it
    if (created) await deps.clients.changed(created.clientId);
    return created;
  }

  function reasonOf(body: unknown): string | undefined {
    const reason = (body as { reason?: unknown } | undefined)?.reason;
    if (reason === undefined || reason === null) return undefined;
    // printable text only: `sigil clients show` prints it in an operator's terminal
    const problem = printableTextProblem(reason, 'reason', 500);
    if (problem) throw new ClientInputError(problem);
    return reason as string;
  }

  async function revokeClient(ctx: Context, actor: string, clientId: string) {
    const body = ctx.state.rawBody ? jsonBody(ctx) : {};
    if (clientId === ADMIN_CLIENT_ID) return sendError(ctx, 400, 'invalid_request', 'the admin client cannot revoke itself');
    const client = await deps.revocations.revokeClient(clientId, actor, reasonOf(body));
    if (!client) return sendError(ctx, 404, 'not_found', 'no such client');
    ctx.body = clientView(client);
  }

  async function setClientKeys(ctx: Context, actor: string, clientId: string) {
    const body = jsonBody(ctx) as { jwks?: unknown; jwks_uri?: unknown };
    const problems = jwksProblems(body.jwks);
    if (problems.length) throw new ClientInputError(`jwks: ${problems.join('; ')}`);
    const existing = await deps.clients.read(clientId);
    if (!existing) return sendError(ctx, 404, 'not_found', 'no such client');
    if (existing.workload) {
      return sendError(ctx, 400, 'invalid_request', `client ${clientId} authenticates with a workload identity (${AUTH_METHOD_OF[existing.workload.kind]}), not registered keys; it has no keys to set (create a new client with --jwks-file instead)`);
    }
    const jwks = body.jwks as { keys: JWK[] };
    await assertProviderAccepts({ ...existing, jwks, jwksUri: undefined });
    const client = await deps.revocations.setClientKeys(clientId, { jwks }, actor);
    if (!client) return sendError(ctx, 404, 'not_found', 'no such client');
    ctx.body = clientView(client);
  }

  async function revokeToken(ctx: Context, actor: string) {
    const body = jsonBody(ctx) as { jti?: unknown };
    // a jti is an identifier: no control characters (U+0000 cannot even be stored)
    if (typeof body.jti !== 'string' || !body.jti || body.jti.length > 200 || /[\u0000-\u001f\u007f]/.test(body.jti)) {
      throw new ClientInputError('jti must be a non-empty string of printable characters');
    }
    ctx.body = await deps.revocations.revokeToken(body.jti, actor, reasonOf(body));
  }

  async function rotateKeys(ctx: Context, actor: string) {
    const staged = await deps.keyRing.rotate();
    if (!staged) {
      const next = deps.keyRing.current.views.find((v) => v.state === 'next');
      return sendError(ctx, 409, 'invalid_request', `a rotation is already staged${next ? `: key ${next.kid} activates at ${next.activates_at}` : ''}`);
    }
    await audit(deps.db, { actor, action: 'keys.rotate', target: staged.kid, details: { activates_at: staged.activates_at } });
    deps.log.info({ action: 'keys.rotate', actor, kid: staged.kid, activates_at: staged.activates_at }, 'signing key staged');
    ctx.status = 201;
    ctx.body = { staged, keys: deps.keyRing.current.views };
  }

  return {
    bootstrap,
    operations: {
      'list-clients': async (ctx) => {
        ctx.body = (await deps.clients.list()).map(clientView);
      },
      'create-client': createClient,
      'read-client': async (ctx, _actor, { client_id }) => {
        const client = await deps.clients.read(client_id!);
        if (!client) return sendError(ctx, 404, 'not_found', 'no such client');
        ctx.body = clientView(client);
      },
      'revoke-client': (ctx, actor, { client_id }) => revokeClient(ctx, actor, client_id!),
      'set-client-keys': (ctx, actor, { client_id }) => setClientKeys(ctx, actor, client_id!),
      'revoke-token': revokeToken,
      'list-keys': async (ctx) => {
        ctx.body = deps.keyRing.current.views;
      },
      'rotate-keys': rotateKeys,
    } satisfies Partial<Record<AdminEndpoint, AdminOperation>>,
  };
}

/** Every admin route's handler, each behind the gate: bootstrap open, every other one for the admin only. */
export function adminPlane(
  gate: ReturnType<typeof adminGate>,
  bootstrap: (ctx: Context) => Promise<unknown>,
  operations: Record<Exclude<AdminEndpoint, 'bootstrap'>, AdminOperation>,
): Record<AdminEndpoint, RouteHandler> {
  const handlers = Object.fromEntries(Object.entries(operations).map(([endpoint, operation]) => [endpoint, gate.admin(operation)]));
  return { ...(handlers as Record<Exclude<AdminEndpoint, 'bootstrap'>, RouteHandler>), bootstrap: gate.open(bootstrap) };
}
