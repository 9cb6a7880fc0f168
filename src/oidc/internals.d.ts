// oidc-provider's grant helpers (lib/helpers/grants.js). They are not part of its public, semver-covered
// API, which is why package.json pins oidc-provider to an exact version. Only what Sigil uses is typed.
declare module 'oidc-provider/lib/helpers/grants.js' {
  import type Provider from 'oidc-provider';
  export function buildTokenResponse(provider: Provider, input: {
    accessToken: string;
    expiresIn?: number | undefined;
    scope?: string | undefined;
    tokenType: string;
    refreshToken?: string | undefined;
    issuedTokenType?: string | undefined;
  }): Record<string, unknown>;
}

// oidc-provider's stateless server nonces (HMAC of the time step under a shared secret): Sigil's own
// DPoP proof check uses them, so its nonces are exactly the ones oidc-provider would hand out.
declare module 'oidc-provider/lib/helpers/challenge.js' {
  export default class ServerChallenge {
    constructor(secret: Buffer, info: string);
    nextChallenge(): string;
    checkChallenge(challenge: string): boolean;
  }
}
