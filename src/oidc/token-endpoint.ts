// The /token endpoint between oidc-provider and Sigil's grants.
//
// oidc-provider runs the request up to the grant (lib/actions/token.js): it parses the form, drops
// parameters the grant does not list, refuses duplicates, authenticates the client (private_key_jwt
// with Sigil's extra rules, provider.ts; the assertion's jti is claimed then, see replay-claims.ts)
// and checks the client may use the grant type. It then calls the grant registered here, which hands
// a Sigil grant (src/tokens/grants/) a TokenRequest: what the request asks, and the steps it takes
// through this layer, `confirm()` (the replay answer) and `sign()` (status-list index and signature).
// What the grant returns is recorded (onIssued) and answered (RFC 6749 §5.1).
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { SigningAlg } from '../config.js';
import type { IssuedToken } from '../tokens/grants/shared.js';
import type { PresentedCertificate } from '../workload/types.js';
import type { ProofToClaim, ReplayClaims } from './replay-claims.js';
import { tokenResponse, type TokenAnswer } from './token-response.js';

/** The access token a grant decided on. */
export interface AccessTokenOrder {
  /** whose token it is when not the client's own (client_credentials: sub = client_id) */
  subject?: { sub: string; grantId: string; gty: 'token_exchange' | 'refresh_token' };
  audience: string;
  scope: string | undefined;
  ttlSeconds: number;
  /** an absolute exp (epoch seconds) fixed by the grant, however long issuing takes */
  expiresAt?: number;
  /** RFC 9449 cnf.jkt: the DPoP key the token is bound to */
  jkt?: string;
  /** RFC 8705 §3 cnf.x5t#S256: the client certificate the token is bound to (its token_type stays Bearer) */
  x5t?: string;
  /** RFC 8693 act, for a delegated token */
  act?: Record<string, unknown>;
}

export interface SignedAccessToken {
  /** the compact JWT */
  value: string;
  jti: string;
  /** epoch seconds */
  expiresAt: number;
  /** the token's lifetime in seconds, as set when it was made */
  expiresIn: number;
  /** 'DPoP' or 'Bearer' */
  tokenType: string;
  /** the claims added at signing (status list reference, act) */
  extra: Record<string, unknown> | undefined;
}

/** A /token request as a Sigil grant sees it, and the steps it takes through the oidc layer. */
export interface TokenRequest {
  /** the client oidc-provider authenticated (an active record is the grant's to check) */
  readonly clientId: string;
  /** the grant's parameters, as oidc-provider kept them */
  readonly params: Readonly<Record<string, unknown>>;
  readonly method: string;
  /** the DPoP header as received (two arrive joined by a comma) */
  readonly dpop: string | undefined;
  /** the client certificate the request came with (src/workload/client-certificate.ts), if any */
  readonly certificate: PresentedCertificate | undefined;
  setHeader(name: string, value: string): void;
  /**
   * Replay answer: resolves once the client assertion's and `proof`'s one-time claims are answered
   * "free"; throws the refusal of a replay (or 503 when the claims could not be made). Nothing may
   * be issued before it resolves.
   */
  confirm(proof: ProofToClaim | undefined): Promise<void>;
  /** Storage and signature: the token's status-list index is allocated, then it is signed. */
  sign(order: AccessTokenOrder): Promise<SignedAccessToken>;
}

/** What a grant hands back: the token to record, and the answer. */
export interface GrantOutcome {
  issued: IssuedToken;
  answer: TokenAnswer;
}

export type SigilGrant = (request: TokenRequest) => Promise<GrantOutcome>;

export interface TokenEndpointDeps {
  claims: ReplayClaims;
  /** the active signing key */
  signing: { alg: SigningAlg; kid: string };
  /** claims a token carries beyond oidc-provider's own (see extraTokenClaims in provider.ts) */
  pendingClaims: WeakMap<object, Record<string, unknown>>;
  onIssued: (ctx: KoaContextWithOIDC, token: IssuedToken) => void;
}

class OidcTokenRequest implements TokenRequest {
  constructor(private readonly ctx: KoaContextWithOIDC, private readonly provider: Provider, private readonly deps: TokenEndpointDeps) {}

  get clientId(): string {
    return this.ctx.oidc.client!.clientId;
  }
  get params(): Readonly<Record<string, unknown>> {
    return this.ctx.oidc.params as Record<string, unknown>;
  }
  get method(): string {
    return this.ctx.method;
  }
  get dpop(): string | undefined {
    const header = this.ctx.req.headers.dpop;
    return header === undefined ? undefined : typeof header === 'string' ? header : '';
  }
  get certificate(): PresentedCertificate | undefined {
    return (this.ctx.state as { clientCertificate?: PresentedCertificate }).clientCertificate;
  }
  setHeader(name: string, value: string): void {
    this.ctx.set(name, value);
  }
  confirm(proof: ProofToClaim | undefined): Promise<void> {
    return this.deps.claims.confirm(this.ctx, this.clientId, proof);
  }

  async sign(order: AccessTokenOrder): Promise<SignedAccessToken> {
    const { ctx, provider } = this;
    const client = ctx.oidc.client!;
    const { subject, audience, scope } = order;
    const token = subject
      ? new provider.AccessToken({ accountId: subject.sub, client, scope, gty: subject.gty, grantId: subject.grantId })
      : new provider.ClientCredentials({ client, scope });
    token.resourceServer = new provider.ResourceServer(audience, {
      audience, scope: scope ?? '', accessTokenFormat: 'jwt', accessTokenTTL: order.ttlSeconds, jwt: { sign: this.deps.signing },
    });
    if (order.jkt !== undefined && order.x5t !== undefined) throw new Error('a token is bound to a DPoP key or a certificate, not both');
    if (order.jkt !== undefined) token.setThumbprint('jkt', order.jkt);
    // the thumbprint itself (setThumbprint('x5t') wants the PEM): oidc-provider's JWT format writes cnf.x5t#S256
    if (order.x5t !== undefined) (token as { 'x5t#S256'?: string })['x5t#S256'] = order.x5t;
    if (order.expiresAt !== undefined) token.exp = order.expiresAt;
    if (order.act) this.deps.pendingClaims.set(token, { act: order.act });
    ctx.oidc.entity(subject ? 'AccessToken' : 'ClientCredentials', token);
    const value = await token.save();
    return {
      value,
      jti: token.jti!,
      expiresAt: token.exp ?? Math.floor(Date.now() / 1000) + token.expiration,
      expiresIn: token.expiration,
      tokenType: token.tokenType,
      extra: token.extra,
    };
  }
}

/** Registers a Sigil grant as oidc-provider's handler of `type`. */
export function registerGrant(provider: Provider, type: string, grant: SigilGrant, parameters: string[], deps: TokenEndpointDeps, allowDuplicates?: string[]): void {
  provider.registerGrantType(type, async function sigilGrant(ctx: KoaContextWithOIDC) {
    let outcome: GrantOutcome;
    try {
      outcome = await grant(new OidcTokenRequest(ctx, provider, deps));
    } catch (err) {
      // refused before its replay step: a held assertion that was replayed is still the answer given
      // (as if it had been checked first, as oidc-provider does when nothing is held)
      await deps.claims.settle(ctx);
      throw err;
    }
    deps.onIssued(ctx, outcome.issued);
    ctx.body = tokenResponse(provider, outcome.answer);
  }, parameters, allowDuplicates);
}
