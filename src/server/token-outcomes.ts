// Every token issued and every token request refused is counted (metrics), logged (with the real
// reason, never a credential) and recorded in token_events — from wherever in the stack it happened.
import type { Context } from 'koa';
import type { Logger } from '../log.js';
import type { IssuedToken } from '../tokens/grants/shared.js';
import type { Refusal } from '../oidc/provider.js';
import type { TokenEventLog } from '../tokens/token-events.js';
import type { AccessTokenClaims } from '../tokens/access-tokens.js';
import { statusRefOf } from '../tokens/access-tokens.js';
import type { Metrics } from './metrics.js';

export interface TokenOutcomes {
  issued(ctx: Context, token: IssuedToken): void;
  refused(ctx: Context, refusal: Refusal): void;
  /** whether this request's refusal was already recorded (by oidc-provider's error event) */
  recorded(ctx: Context): boolean;
}

export function tokenOutcomes(events: TokenEventLog, metrics: Metrics, statusListPrefix: string, log: Logger): TokenOutcomes {
  return {
    issued(ctx, t) {
      const status = t.extra ? statusRefOf(t.extra as AccessTokenClaims, statusListPrefix) : undefined;
      events.record({
        at: new Date(), outcome: 'issued', grantType: t.grantType, clientId: t.clientId, jti: t.jti, expiresAt: new Date(t.expiresAt * 1000),
        requestId: ctx.state.requestId, statusList: status?.listId, statusIdx: status?.idx,
      });
      metrics.countIssued(t.clientId, t.grantType);
      log.info({ requestId: ctx.state.requestId, event: 'token.issued', client_id: t.clientId, jti: t.jti, grant_type: t.grantType, exp: t.expiresAt }, 'token issued');
    },
    refused(ctx, r) {
      ctx.state.refusalRecorded = true;
      events.record({ at: new Date(), outcome: 'refused', grantType: r.grantType, clientId: r.clientId, error: r.error, reason: r.reason, requestId: ctx.state.requestId });
      metrics.countRefused(r.clientId, r.grantType, r.error);
      log.info({ requestId: ctx.state.requestId, event: 'token.refused', client_id: r.clientId, grant_type: r.grantType, error: r.error, reason: r.reason }, 'token refused');
    },
    recorded: (ctx) => ctx.state.refusalRecorded === true,
  };
}
