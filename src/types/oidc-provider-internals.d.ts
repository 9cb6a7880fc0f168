// oidc-provider's grant helpers (lib/helpers/grants.js). They are not part of its public, semver-covered
// API, which is why package.json pins oidc-provider to an exact version. Only what Sigil uses is typed.
declare module 'oidc-provider/lib/helpers/grants.js' {
  import type { KoaContextWithOIDC } from 'oidc-provider';
  import type Provider from 'oidc-provider';
  type ErrorClass = new (description?: string) => Error;
  export interface DpopResult {
    thumbprint: string;
    jti: string;
    iat: number;
  }
  export function validateDpop(provider: Provider, ctx: KoaContextWithOIDC, accessToken?: string): Promise<DpopResult | undefined>;
  export function checkDpopReplay(provider: Provider, ctx: KoaContextWithOIDC, dPoP: DpopResult, clientId: string, errorClass?: ErrorClass): Promise<void>;
  export function checkDpopRequired(provider: Provider, ctx: KoaContextWithOIDC, dPoP: DpopResult | undefined, errorClass?: ErrorClass): void;
  export function buildTokenResponse(provider: Provider, input: {
    accessToken: string;
    expiresIn: number | undefined;
    scope?: string;
    tokenType: string;
    refreshToken?: string;
    issuedTokenType?: string;
    [extra: string]: unknown;
  }): Record<string, unknown>;
}
