// Partner self-onboarding over HTTP: RFC 7591 registration (`POST /register`, Bearer initial access
// token), RFC 7592 management (`GET|PUT|DELETE /register/{client_id}`, Bearer registration access
// token), and the admin routes that issue initial access tokens (`/admin/registration-tokens`).
import type { Context, Next } from 'koa';
import type { Provider } from '../oidc/provider.js';
import type { Logger } from '../log.js';
import type { JwksUriFetcher } from '../outbound/jwks-fetch.js';
import { clientMetadata } from '../oidc/provider.js';
import {
  newRegisteredClient, parseGrant, parseKeyUpdate, parseRegistration, RegistrationError, registrationView,
} from '../registration/registration.js';
import type { Revocations } from '../revocation/revocations.js';
import type { ClientRecord, ClientStore, NewClient } from '../clients/client-store.js';
import type { Db, Queryable } from '../storage/db.js';
import type { ClientRegistrations, InitialAccessToken, InitialAccessTokens } from '../registration/initial-access-tokens.js';
import { sendError } from './http-errors.js';
import { parseJsonBody } from './json-body.js';
import { RegistrationThrottle } from '../registration/registration-throttle.js';

export interface RegistrationDeps {
  issuer: string;
  /** the active signing key's algorithm (what stored clients must be valid with) */
  signingAlg: () => string;
  db: Db;
  clients: ClientStore;
  revocations: Revocations;
  initialAccessTokens: InitialAccessTokens;
  registrations: ClientRegistrations;
  jwksUri: JwksUriFetcher;
  provider: () => Provider;
  log: Logger;
  /** bounds argon2 work per initial access token and per source address (a default one when absent) */
  throttle?: RegistrationThrottle;
}

/** the actor recorded for what registrants do to their own clients */
export const REGISTRATION_ACTOR = 'registration';

export const DEFAULT_TOKEN_TTL_SECONDS = 86_400;
export const MAX_TOKEN_TTL_SECONDS = 30 * 86_400;
export const MAX_TOKEN_USES = 1000;

/** `Authorization: Bearer <token>` (RFC 6750 §2.1); undefined when absent or another scheme. */
function bearerToken(ctx: Context): string | undefined {
  const m = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i.exec(ctx.get('authorization'));
  return m?.[1];
}

function unauthorized(ctx: Context, description: string): void {
  const challenge = `Bearer error="invalid_token", error_description="${description.replace(/["\\]/g, '')}"`;
  sendError(ctx, 401, 'invalid_token', description, { 'WWW-Authenticate': challenge });
}

function jsonBody(ctx: Context, what: string): unknown {
  if (!ctx.is('application/json')) throw new RegistrationError(`send the ${what} as JSON (Content-Type: application/json)`);
  const body = parseJsonBody(ctx);
  if (!body.ok) throw new RegistrationError(body.problem);
  return body.value;
}

async function auditRow(q: Queryable, actor: string, action: string, target: string, details?: unknown, reason?: string): Promise<void> {
  await q.query('INSERT INTO audit_log (actor, action, target, reason, details) VALUES ($1, $2, $3, $4, $5)', [
    actor, action, target, reason ?? null, details === undefined ? null : JSON.stringify(details),
  ]);
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
  async function assertProviderAccepts(c: NewClient | ClientRecord): Promise<void> {
    try {
      await deps.provider().Client.validate(clientMetadata({ status: 'active', createdAt: new Date(), updatedAt: new Date(), ...c }, deps.signingAlg()));
    } catch (err) {
      throw new RegistrationError((err as { error_description?: string }).error_description ?? 'client metadata is invalid');
    }
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
      await auditRow(tx, REGISTRATION_ACTOR, 'registration_token.use', iat.id, { client_id: created.clientId, uses_left: used.usesLeft });
      await auditRow(tx, REGISTRATION_ACTOR, 'client.register', created.clientId, {
        initial_access_token: iat.id, name: created.name, scope: created.scope.join(' '), audiences: created.audiences,
        ...(created.jwksUri ? { jwks_uri: created.jwksUri } : { kids: created.jwks?.keys.map((k) => k.kid) }),
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

  async function manage(ctx: Context, clientId: string) {
    if (!['GET', 'PUT', 'DELETE'].includes(ctx.method)) {
      ctx.set('Allow', 'GET, PUT, DELETE');
      return sendError(ctx, 405, 'invalid_request', `method ${ctx.method} is not allowed on a client registration`);
    }
    const record = await managed(ctx, clientId);
    if (!record) return;
    if (ctx.method === 'GET') {
      ctx.body = registrationView(record, issuer);
      return;
    }
    if (ctx.method === 'DELETE') {
      await deps.revocations.revokeClient(clientId, REGISTRATION_ACTOR, 'deleted by its registrant (RFC 7592)');
      ctx.status = 204;
      ctx.body = null;
      return;
    }
    const keys = parseKeyUpdate(jsonBody(ctx, 'client metadata'), record, deps.jwksUri.policy);
    await assertProviderAccepts({ ...record, jwks: keys.jwks, jwksUri: keys.jwksUri });
    await assertJwksUriUsable(keys.jwksUri);
    const updated = await deps.revocations.setClientKeys(clientId, keys, REGISTRATION_ACTOR);
    if (!updated) return unauthorized(ctx, 'the registration access token is not valid for this client');
    ctx.body = registrationView(updated, issuer);
  }

  return async function registrationRoutes(ctx: Context, next: Next) {
    if (ctx.path !== '/register' && !ctx.path.startsWith('/register/')) return next();
    ctx.set('Cache-Control', 'no-store');
    try {
      if (ctx.path === '/register') {
        if (ctx.method !== 'POST') {
          ctx.set('Allow', 'POST');
          return sendError(ctx, 405, 'invalid_request', `method ${ctx.method} is not allowed on /register`);
        }
        return await register(ctx);
      }
      const m = /^\/register\/([^/]+)$/.exec(ctx.path);
      if (!m) return sendError(ctx, 404, 'invalid_request', `no endpoint ${ctx.method} ${ctx.path}`);
      return await manage(ctx, decodeURIComponent(m[1]!));
    } catch (err) {
      if (err instanceof RegistrationError) {
        log.info({ action: 'client.register', decision: 'refused', reason: err.message }, 'client metadata refused');
        return sendError(ctx, 400, 'invalid_client_metadata', err.message);
      }
      if (err instanceof URIError) return sendError(ctx, 400, 'invalid_request', 'malformed path');
      throw err;
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Admin plane: issuing initial access tokens (called by admin-api.ts once the admin is authenticated)

function tokenStatus(t: InitialAccessToken): 'active' | 'expired' | 'used_up' | 'revoked' {
  if (t.revokedAt) return 'revoked';
  if (t.expiresAt.getTime() <= Date.now()) return 'expired';
  return t.usesLeft > 0 ? 'active' : 'used_up';
}

/** An initial access token as the admin API shows it; `token` only in the answer that created it. */
export function initialAccessTokenView(t: InitialAccessToken, token?: string) {
  return {
    ...(token ? { token } : {}),
    id: t.id,
    status: tokenStatus(t),
    expires_at: t.expiresAt.toISOString(),
    uses: t.uses,
    uses_left: t.usesLeft,
    scope: t.scope.join(' '),
    audiences: t.audiences,
    created_at: t.createdAt.toISOString(),
    created_by: t.createdBy,
    ...(t.revokedAt ? { revoked_at: t.revokedAt.toISOString(), revoked_by: t.revokedBy } : {}),
  };
}

function wholeNumber(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new RegistrationError(`${name} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

/**
 * `POST /admin/registration-tokens`, `GET /admin/registration-tokens[/{id}]`,
 * `POST /admin/registration-tokens/{id}/revoke`. Resolves to false for any other path.
 */
export function registrationTokenAdmin(deps: Pick<RegistrationDeps, 'issuer' | 'db' | 'initialAccessTokens' | 'log'>) {
  async function create(ctx: Context, actor: string) {
    const body = (ctx.state.rawBody ? jsonBody(ctx, 'token settings') : {}) as Record<string, unknown> | null;
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new RegistrationError('the request body must be a JSON object');
    const expiresIn = wholeNumber(body.expires_in, 'expires_in', DEFAULT_TOKEN_TTL_SECONDS, 1, MAX_TOKEN_TTL_SECONDS);
    const uses = wholeNumber(body.uses, 'uses', 1, 1, MAX_TOKEN_USES);
    const grant = parseGrant(body.scope, body.audiences, deps.issuer);
    const { token, record } = await deps.initialAccessTokens.issue({ ...grant, uses, expiresInSeconds: expiresIn }, actor);
    await auditRow(deps.db, actor, 'registration_token.create', record.id, {
      uses, scope: grant.scope.join(' '), audiences: grant.audiences, expires_at: record.expiresAt.toISOString(),
    });
    deps.log.info({ action: 'registration_token.create', actor, initial_access_token: record.id, uses, expires_at: record.expiresAt.toISOString() }, 'initial access token created');
    ctx.status = 201;
    ctx.body = initialAccessTokenView(record, token);
  }

  async function revoke(ctx: Context, actor: string, id: string) {
    const before = await deps.initialAccessTokens.read(id);
    if (!before) return sendError(ctx, 404, 'not_found', 'no such initial access token');
    const after = (await deps.initialAccessTokens.revoke(id, actor))!;
    if (!before.revokedAt) {
      await auditRow(deps.db, actor, 'registration_token.revoke', id);
      deps.log.info({ action: 'registration_token.revoke', actor, initial_access_token: id }, 'initial access token revoked');
    }
    ctx.body = initialAccessTokenView(after);
  }

  return async function registrationTokenRoutes(ctx: Context, actor: string): Promise<boolean> {
    if (ctx.path !== '/admin/registration-tokens' && !ctx.path.startsWith('/admin/registration-tokens/')) return false;
    try {
      if (ctx.path === '/admin/registration-tokens') {
        if (ctx.method === 'POST') await create(ctx, actor);
        else if (ctx.method === 'GET') ctx.body = (await deps.initialAccessTokens.list()).map((t) => initialAccessTokenView(t));
        else return false;
        return true;
      }
      const m = /^\/admin\/registration-tokens\/([^/]+)(\/revoke)?$/.exec(ctx.path);
      if (!m) return false;
      const id = decodeURIComponent(m[1]!);
      if (m[2] && ctx.method === 'POST') {
        await revoke(ctx, actor, id);
        return true;
      }
      if (!m[2] && ctx.method === 'GET') {
        const t = await deps.initialAccessTokens.read(id);
        if (!t) sendError(ctx, 404, 'not_found', 'no such initial access token');
        else ctx.body = initialAccessTokenView(t);
        return true;
      }
      return false;
    } catch (err) {
      if (err instanceof RegistrationError) {
        sendError(ctx, 400, 'invalid_request', err.message);
        return true;
      }
      throw err;
    }
  };
}
