import { errors } from 'oidc-provider';

/**
 * A store Sigil depends on for a safe answer (Postgres, Redis) is unreachable. It is an
 * oidc-provider error so the provider's own error handler renders it: 503 temporarily_unavailable,
 * never a token issued without its replay check.
 */
export class StorageUnavailable extends errors.OIDCProviderError {
  readonly store: 'postgres' | 'redis';

  constructor(store: 'postgres' | 'redis', cause?: unknown) {
    super(503, 'temporarily_unavailable', { cause: cause as Error | undefined, detail: `${store} is unreachable` });
    this.store = store;
    this.error_description = 'the server cannot reach its storage; retry shortly';
    // expose: oidc-provider hides non-exposed (5xx) errors behind server_error
    this.expose = true;
  }
}
