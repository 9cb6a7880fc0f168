// The admin plane's routes for initial access tokens (RFC 7591 §3): an operator issues one to a partner,
// who registers its own clients with it (registration-api.ts). adminGate() in admin-api.ts authenticates.
import type { Context } from 'koa';
import type { Logger } from '../log.js';
import { parseGrant, RegistrationError } from '../registration/registration.js';
import type { InitialAccessToken, InitialAccessTokens } from '../registration/initial-access-tokens.js';
import type { Db } from '../storage/db.js';
import { audit } from '../storage/audit-log.js';
import type { AdminOperation } from './admin-api.js';
import { sendError } from './http-errors.js';
import { jsonBody } from './registration-api.js';
import type { AdminEndpoint, RouteParams } from './routes.js';

export const DEFAULT_TOKEN_TTL_SECONDS = 86_400;
export const MAX_TOKEN_TTL_SECONDS = 30 * 86_400;
export const MAX_TOKEN_USES = 1000;

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

export interface RegistrationTokenAdminDeps {
  issuer: string;
  db: Db;
  initialAccessTokens: InitialAccessTokens;
  log: Logger;
}

/** The admin operations on initial access tokens, by endpoint (routes.ts); adminGate() goes in front. */
export function registrationTokenAdmin(deps: RegistrationTokenAdminDeps) {
  async function create(ctx: Context, actor: string) {
    const body = (ctx.state.rawBody ? jsonBody(ctx, 'token settings') : {}) as Record<string, unknown> | null;
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new RegistrationError('the request body must be a JSON object');
    const expiresIn = wholeNumber(body.expires_in, 'expires_in', DEFAULT_TOKEN_TTL_SECONDS, 1, MAX_TOKEN_TTL_SECONDS);
    const uses = wholeNumber(body.uses, 'uses', 1, 1, MAX_TOKEN_USES);
    const grant = parseGrant(body.scope, body.audiences, deps.issuer);
    const { token, record } = await deps.initialAccessTokens.issue({ ...grant, uses, expiresInSeconds: expiresIn }, actor);
    await audit(deps.db, {
      actor, action: 'registration_token.create', target: record.id,
      details: { uses, scope: grant.scope.join(' '), audiences: grant.audiences, expires_at: record.expiresAt.toISOString() },
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
      await audit(deps.db, { actor, action: 'registration_token.revoke', target: id });
      deps.log.info({ action: 'registration_token.revoke', actor, initial_access_token: id }, 'initial access token revoked');
    }
    ctx.body = initialAccessTokenView(after);
  }

  async function list(ctx: Context) {
    ctx.body = (await deps.initialAccessTokens.list()).map((t) => initialAccessTokenView(t));
  }

  async function read(ctx: Context, _actor: string, { token_id }: RouteParams) {
    const t = await deps.initialAccessTokens.read(token_id!);
    if (!t) return sendError(ctx, 404, 'not_found', 'no such initial access token');
    ctx.body = initialAccessTokenView(t);
  }

  /** settings the operator got wrong are an invalid_request here (not client metadata) */
  function refusingBadSettings(operation: AdminOperation): AdminOperation {
    return async (ctx, actor, params) => {
      try {
        await operation(ctx, actor, params);
      } catch (err) {
        if (!(err instanceof RegistrationError)) throw err;
        sendError(ctx, 400, 'invalid_request', err.message);
      }
    };
  }

  return {
    'list-registration-tokens': list,
    'issue-registration-token': refusingBadSettings(create),
    'read-registration-token': read,
    'revoke-registration-token': (ctx, actor, { token_id }) => revoke(ctx, actor, token_id!),
  } satisfies Partial<Record<AdminEndpoint, AdminOperation>>;
}
