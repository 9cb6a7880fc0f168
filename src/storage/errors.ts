import { OAuthError } from '../oidc/refusals.js';

/**
 * A store Sigil depends on for a safe answer (Postgres, Redis) is unreachable, or cannot be trusted
 * yet. It is an oidc-provider error so the provider's own error handler renders it: 503
 * temporarily_unavailable, never a token issued without its replay check.
 */
export class StorageUnavailable extends OAuthError {
  readonly store: 'postgres' | 'redis';

  /** `why`: what the client and the logs are told, when it is not simply that the store is unreachable */
  constructor(store: 'postgres' | 'redis', cause?: unknown, why?: { description: string; detail: string }) {
    super(503, 'temporarily_unavailable', { cause: cause as Error | undefined, detail: why?.detail ?? `${store} is unreachable` });
    this.store = store;
    this.error_description = why?.description ?? 'the server cannot reach its storage; retry shortly';
    // expose: oidc-provider hides non-exposed (5xx) errors behind server_error
    this.expose = true;
  }
}
