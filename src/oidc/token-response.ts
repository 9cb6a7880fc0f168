// The RFC 6749 §5.1 token response, built by oidc-provider's own helper (a deep import: not covered by
// its semver, hence the exact pin; test/oidc/oidc-provider-contract.test.ts checks its shape).
import type Provider from 'oidc-provider';
import { buildTokenResponse } from 'oidc-provider/lib/helpers/grants.js';

/** What a grant answers; undefined members are left out of the response. */
export interface TokenAnswer {
  accessToken: string;
  /** seconds */
  expiresIn: number;
  scope: string | undefined;
  /** 'DPoP' or 'Bearer' */
  tokenType: string;
  refreshToken?: string | undefined;
  /** RFC 8693 */
  issuedTokenType?: string;
}

export function tokenResponse(provider: Provider, answer: TokenAnswer): Record<string, unknown> {
  return buildTokenResponse(provider, answer);
}
