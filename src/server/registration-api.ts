// Partner self-onboarding over HTTP (public plane): RFC 7591 registration (`POST /register`, Bearer
// initial access token) and RFC 7592 management (`GET|PUT|DELETE /register/{client_id}`, Bearer
// registration access token). The admin routes that issue initial access tokens are in
// registration-tokens-api.ts.
import type { Context } from 'koa';
import type { Logger } from '../log.js';
import type { JwksUriFetcher } from '../outbound/jwks-fetch.js';
import {
  newRegisteredClient, parseKeyUpdate, parseRegistration, RegistrationError, registrationView,
} from '../registration/registration.js';
import type { Revocations } from '../revocation/revocations.js';
import type { ClientRecord, ClientStore, NewClient } from '../clients/client-store.js';
import type { Db } from '../storage/db.js';
import { audit } from '../storage/audit-log.js';
import type { ClientRegistrations, InitialAccessToken, InitialAccessTokens } from '../registration/initial-access-tokens.js';
import { sendError } from './http-errors.js';
import { parseJsonBody } from './json-body.js';
import { RegistrationThrottle } from '../registration/registration-throttle.js';
import type { PublicEndpoint, RouteHandler } from './routes.js';

export interface RegistrationDeps {
  issuer: string;
  db: Db;
  clients: ClientStore;
  revocations: Revocations;
  initialAccessTokens: InitialAccessTokens;
  registrations: ClientRegistrations;
  jwksUri: JwksUriFetcher;
  /** why oidc-provider would not load this client's metadata, or undefined */
  metadataProblem: (c: NewClient) => Promise<string | undefined>;
  log: Logger;
  /** bounds argon2 work per initial access token and per source address (a default one when absent) */
  throttle?: RegistrationThrottle;
}

/** the actor recorded for what registrants do to their own clients */
export const REGISTRATION_ACTOR = 'registration';

/** `Authorization: Bearer <token>` (RFC 6750 §2.1); undefined when absent or another scheme. */
function bearerToken(ctx: Context): string | undefined {
  const m = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i.exec(ctx.get('authorization'));
  return m?.[1];
}

function unauthorized(ctx: Context, description: string): void {
  const challenge = `Bearer error="invalid_token", error_description="${description.replace(/["\\]/g, '')}"`;
  sendError(ctx, 401, 'invalid_token', description, { 'WWW-Authenticate': challenge });
}

export function jsonBody(ctx: Context, what: string): unknown {
  if (!ctx.is('application/json')) throw new RegistrationError(`send the ${what} as JSON (Content-Type: application/json)`);
  const body = parseJsonBody(ctx);
  if (!body.ok) throw new RegistrationError(body.problem);
  return body.value;
}

const REFUSAL_TEXT = {
  expired: 'the initial access token has expired; ask the operator for a new one',
  revoked: 'the initial access token was revoked; ask the operator for a new one',
  used_up: 'the initial access token has no use left; ask the operator for a new one',
} as const;

export function registrationApi(deps: RegistrationDeps) {
  const { issuer, log } = deps;
  const throttle = deps.throttle ?? new RegistrationThrottle();

  /** Refuse metadata oidc-provider itself would not load, before anything is stored. */
  async function assertProviderAccepts(c: NewClient): Promise<void> {
    const problem = await deps.metadataProblem(c);
    if (problem) throw new RegistrationError(problem);
  }

  /** A jwks_uri is fetched once now, so a partner learns of an unusable one at registration. */
  async function assertJwksUriUsable(jwksUri: string | undefined): Promise<void> {
    if (!jwksUri) return;
    const loaded = await deps.jwksUri.load(jwksUri);
    if (!loaded.ok) throw new RegistrationError(loaded.problem);
  }

  async function register(ctx: Context) {
    const token = bearerToken(ctx);
    if (!token) return unauthorized(ctx, 'registration needs an initial access token: Authorization: Bearer <token>');
    const checked = await deps.initialAccessTokens.check(token, (id) => throttle.admit(id, ctx.req.socket.remoteAddress));
    if (!checked.ok) {
      log.warn({ action: 'client.register', decision: 'refused', reason: checked.reason, initial_access_token: checked.id }, 'initial access token refused');
      // no audit row: the presenter is not authenticated (a dead token's secret is never checked), and
      // a database write per forged request would be a cheap way to fill audit_log
      if (checked.reason === 'throttled') {
        const wait = checked.retryAfterSeconds;
        return sendError(ctx, 429, 'temporarily_unavailable', `too many attempts with this initial access token or from this address; retry after ${wait} s`, { 'Retry-After': String(wait) });
      }
      const text = checked.reason in REFUSAL_TEXT ? REFUSAL_TEXT[checked.reason as keyof typeof REFUSAL_TEXT] : 'the initial access token is not valid';
      return unauthorized(ctx, text);
    }
    const iat: InitialAccessToken = checked.record;
    const meta = parseRegistration(jsonBody(ctx, 'client metadata'), iat, deps.jwksUri.policy);
    const client = newRegisteredClient(meta);
    await assertProviderAccepts(client);
    await assertJwksUriUsable(client.jwksUri);

    // one transaction: the use is taken only if the client is created, and the client only with a use
    const done = await deps.db.transaction(async (tx) => {
      const used = await deps.initialAccessTokens.consume(iat.id, tx);
      if (!used) return undefined;
      const created = await deps.clients.create(client, tx);
      if (!created) throw new Error('client_id collision');
      const registrationAccessToken = await deps.registrations.create(created.clientId, iat.id, tx);
      await audit(tx, { actor: REGISTRATION_ACTOR, action: 'registration_token.use', target: iat.id, details: { client_id: created.clientId, uses_left: used.usesLeft } });
      await audit(tx, {
        actor: REGISTRATION_ACTOR, action: 'client.register', target: created.clientId, details: {
          initial_access_token: iat.id, name: created.name, scope: created.scope.join(' '), audiences: created.audiences,
          ...(created.jwksUri ? { jwks_uri: created.jwksUri } : { kids: created.jwks?.keys.map((k) => k.kid) }),
        },
      });
      return { created, registrationAccessToken, usesLeft: used.usesLeft };
    });
    if (!done) {
      log.warn({ action: 'client.register', decision: 'refused', reason: 'no_use_left', initial_access_token: iat.id }, 'initial access token refused');
      // a concurrent registration took the last use, or the token expired or was revoked meanwhile
      const now = await deps.initialAccessTokens.read(iat.id);
      const reason = now?.revokedAt ? 'revoked' : now && now.expiresAt.getTime() <= Date.now() ? 'expired' : 'used_up';
      return unauthorized(ctx, REFUSAL_TEXT[reason]);
    }
    log.info({ action: 'client.register', client_id: done.created.clientId, initial_access_token: iat.id, uses_left: done.usesLeft }, 'client registered');
    ctx.status = 201;
    ctx.set('Pragma', 'no-cache');
    ctx.body = registrationView(done.created, issuer, done.registrationAccessToken);
  }

  /** RFC 7592 §2: the registration access token of this very client, and the client still active. */
  async function managed(ctx: Context, clientId: string): Promise<ClientRecord | undefined> {
    const token = bearerToken(ctx);
    const record = token && (await deps.registrations.verify(clientId, token)) ? await deps.clients.read(clientId) : undefined;
    if (!record || record.status !== 'active') {
      unauthorized(ctx, 'the registration access token is not valid for this client');
      return undefined;
    }
    return record;
  }

  async function read(ctx: Context, clientId: string) {
    const record = await managed(ctx, clientId);
    if (record) ctx.body = registrationView(record, issuer);
  }

  async function remove(ctx: Context, clientId: string) {
    if (!(await managed(ctx, clientId))) return;
    await deps.revocations.revokeClient(clientId, REGISTRATION_ACTOR, 'deleted by its registrant (RFC 7592)');
    ctx.status = 204;
    ctx.body = null;
  }

  async function update(ctx: Context, clientId: string) {
    const record = await managed(ctx, clientId);
    if (!record) return;
    const keys = parseKeyUpdate(jsonBody(ctx, 'client metadata'), record, deps.jwksUri.policy);
    await assertProviderAccepts({ ...record, jwks: keys.jwks, jwksUri: keys.jwksUri });
    await assertJwksUriUsable(keys.jwksUri);
    const updated = await deps.revocations.setClientKeys(clientId, keys, REGISTRATION_ACTOR);
    if (!updated) return unauthorized(ctx, 'the registration access token is not valid for this client');
    ctx.body = registrationView(updated, issuer);
  }

  /** no-store answers, and refused metadata as RFC 7591 §3.2.2 has it */
  function handler(operation: (ctx: Context, clientId: string) => Promise<unknown>): RouteHandler {
    return async (ctx, params) => {
      ctx.set('Cache-Control', 'no-store');
      try {
        await operation(ctx, params.client_id!);
      } catch (err) {
        if (!(err instanceof RegistrationError)) throw err;
        log.info({ action: 'client.register', decision: 'refused', reason: err.message }, 'client metadata refused');
        sendError(ctx, 400, 'invalid_client_metadata', err.message);
      }
    };
  }

  return {
    register: handler(register),
    'read-registration': handler(read),
    'update-registration': handler(update),
    'delete-registration': handler(remove),
  } satisfies Partial<Record<PublicEndpoint, RouteHandler>>;
}
