// Builds the oidc-provider instance with Sigil's policy: private_key_jwt only, an explicit algorithm
// allow-list, DPoP, JWT access tokens, and Sigil's own grants (how a /token request reaches them:
// token-endpoint.ts). Everything Sigil knows about oidc-provider lives in this folder.
import Provider, { errors, type ClientMetadata, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Config, SigningAlg } from '../config.js';
import type { Logger } from '../log.js';
import type { ClientRecord, ClientStore, NewClient } from '../clients/client-store.js';
import { CLIENT_SIGNING_ALGS } from '../clients/client-keys.js';
import { acceptedAssertionAudiences, assertionAudienceProblem, assertionTypeProblem, registeredKeysProblem } from '../clients/client-assertion.js';
import { clientCredentialsGrant, parameters as clientCredentialsParameters } from '../tokens/grants/client-credentials.js';
import type { IssuedToken } from '../tokens/grants/shared.js';
import { parameters as exchangeParameters, tokenExchangeGrant } from '../tokens/grants/token-exchange.js';
import { parameters as refreshParameters, refreshTokenGrant } from '../tokens/grants/refresh-token.js';
import { CLIENT_CREDENTIALS, REFRESH_TOKEN, TOKEN_EXCHANGE } from '../tokens/grant-types.js';
import type { RefreshTokens } from '../tokens/refresh-tokens.js';
import type { DelegationChains } from '../tokens/delegation-chain.js';
import { looksLikeRefreshToken } from '../tokens/refresh-token-store.js';
import { resolveAudience } from '../tokens/token-policy.js';
import type { JWK } from 'jose';
import { introspectAccessToken, revokeOwnAccessToken, type TokenDecisions } from '../tokens/introspection.js';
import { statusListPath, type StatusIndexAllocator } from '../revocation/status-list.js';
import type { JwksUriFetcher } from '../outbound/jwks-fetch.js';
import type { DpopProofVerifier } from '../tokens/dpop-proof.js';
import { NodeSigningKey } from '../keys/node-signing-key.js';
import type { Db } from '../storage/db.js';
import type { WorkloadVerdict } from '../workload/types.js';
import type { ReplayGuard } from '../storage/replay-guard.js';
import { oidcAdapterFactory, type ClientMetadataOf } from './adapter.js';
import { advertisedMetadata, DISCOVERY_MAX_AGE_SECONDS, type MtlsMetadata } from './discovery.js';
import { rewriteRefusal } from './error-rewrites.js';
import { ReplayClaims, type ClaimingRequest } from './replay-claims.js';
import { registerGrant, type TokenEndpointDeps } from './token-endpoint.js';

export type { Provider };

/** an assertion may live at most this long: bounds how long its jti must be remembered */
export const MAX_ASSERTION_LIFETIME_SECONDS = 300;

/** The grant types oidc-provider knows about in this build (others a client holds are Sigil-only for now). */
const PROVIDER_GRANTS = new Set<string>([CLIENT_CREDENTIALS, TOKEN_EXCHANGE, REFRESH_TOKEN]);

export interface Refusal {
  error: string;
  reason: string | undefined;
  /** only a client that authenticated (or at least exists); never an unverified claim */
  clientId: string | undefined;
  grantType: string | undefined;
}

export interface ProviderDeps {
  config: Config;
  /** the key that signs; the others in privateJwks are only published */
  signing: { alg: SigningAlg; kid: string };
  privateJwks: { keys: JWK[] };
  /** what oidc-provider's adapter reads and writes (adapter.ts) */
  storage: { db: Db; replay: ReplayGuard; metadataOf: ClientMetadataOf; isClientRevoked: (clientId: string) => boolean };
  clients: ClientStore;
  nonceSecret: Buffer;
  cookieKeys: string[];
  log: Logger;
  onIssued: (ctx: KoaContextWithOIDC, token: IssuedToken) => void;
  onRefused: (ctx: KoaContextWithOIDC, refusal: Refusal) => void;
  statusIndices: StatusIndexAllocator;
  tokens: TokenDecisions;
  refreshTokens: RefreshTokens;
  /** issues exchanged and refreshed tokens under their chain's locks, recording their lineage */
  chains: DelegationChains;
  /** the only way oidc-provider reaches out: SSRF-safe jwks_uri fetching */
  jwksUri: JwksUriFetcher;
  /** Sigil's DPoP proof check (oidc-provider's validateDpop is not used) */
  proofs: DpopProofVerifier;
  /**
   * client authentication methods Sigil serves itself, before oidc-provider (discovery.ts: e.g.
   * spiffe_jwt once workload authentication is wired); undefined: none
   */
  workloadAuthMethods?: readonly string[];
}

/**
 * The requests whose client-assertion answer is held for the grant's confirm() (replay-claims.ts):
 * client_credentials, the hot path. Only requests that reach Sigil's grant: a client that may not use
 * the grant is refused by oidc-provider before it, and that refusal must still name a replay first.
 */
export function holdsClaims(req: ClaimingRequest): boolean {
  const oidc = req.oidc;
  return oidc?.route === 'token' && oidc.params?.grant_type === CLIENT_CREDENTIALS && oidc.client?.grantTypeAllowed?.(CLIENT_CREDENTIALS) === true;
}

/**
 * How oidc-provider sees a workload-bound client (no registered keys): `tls_client_auth` with this
 * marker as its one subject value. Sigil authenticates such clients itself before oidc-provider reads
 * the request (src/workload/workload-auth.ts) and leaves a WorkloadVerdict on ctx.state.workload;
 * oidc-provider's mTLS hooks (workloadHooks) answer from that verdict alone, so a request without one
 * — whatever it carries — fails client authentication (fail closed).
 */
export const WORKLOAD_SUBJECT_MARKER = 'urn:sigil:workload';

/** The verdict Sigil reached for this request's client, if any. */
function verdictOf(ctx: KoaContextWithOIDC): WorkloadVerdict | undefined {
  return (ctx.state as { workload?: WorkloadVerdict } | undefined)?.workload;
}

/** oidc-provider's features.mTLS hooks: they pass only for the client Sigil authenticated on this request. */
const workloadHooks = {
  getCertificate(ctx: KoaContextWithOIDC): string | undefined {
    // any non-empty value: oidc-provider only tests it (the certificate itself is Sigil's business)
    return verdictOf(ctx) ? WORKLOAD_SUBJECT_MARKER : undefined;
  },
  certificateAuthorized(ctx: KoaContextWithOIDC): boolean {
    const verdict = verdictOf(ctx);
    return verdict !== undefined && verdict.clientId === ctx.oidc.client?.clientId;
  },
  certificateSubjectMatches(ctx: KoaContextWithOIDC, property: string, expected: string): boolean {
    const verdict = verdictOf(ctx);
    return property === 'tls_client_auth_san_uri' && expected === WORKLOAD_SUBJECT_MARKER
      && verdict !== undefined && verdict.clientId === ctx.oidc.client?.clientId;
  },
};

/** The oidc-provider view of a Sigil client. */
export function clientMetadata(record: ClientRecord, signingAlg: string): ClientMetadata {
  return {
    client_id: record.clientId,
    client_name: record.name,
    ...(record.workload
      ? { token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: WORKLOAD_SUBJECT_MARKER }
      : { token_endpoint_auth_method: 'private_key_jwt', ...(record.jwksUri ? { jwks_uri: record.jwksUri } : { jwks: record.jwks }) }),
    grant_types: record.grantTypes.filter((g) => PROVIDER_GRANTS.has(g)),
    response_types: [],
    redirect_uris: [],
    dpop_bound_access_tokens: record.dpopRequired,
    id_token_signed_response_alg: signingAlg,
  } as ClientMetadata;
}

/** What oidc-provider would refuse to load about a client (undefined: nothing), asked before it is stored. */
export async function clientMetadataProblem(provider: Provider, client: NewClient, signingAlg: string): Promise<string | undefined> {
  try {
    const record = { ...client, status: 'active' as const, createdAt: new Date(), updatedAt: new Date() };
    await provider.Client.validate(clientMetadata(record, signingAlg));
    return undefined;
  } catch (err) {
    return (err as { error_description?: string }).error_description ?? 'client metadata is invalid';
  }
}

export function createProvider(deps: ProviderDeps): Provider {
  const { config } = deps;
  const { alg } = deps.signing;
  const assertionAudiences = acceptedAssertionAudiences(config.issuer, config.assertionAudTokenEndpoint);
  const claims = new ReplayClaims(deps.storage.replay, holdsClaims);
  // claims a grant wants on the token it is about to sign (e.g. `act`): oidc-provider only lets
  // extraTokenClaims add claims, and that hook sees the token, not the grant
  const pendingClaims = new WeakMap<object, Record<string, unknown>>();
  const adapter = oidcAdapterFactory({ ...deps.storage, clients: deps.clients, claims, currentRequest: () => Provider.ctx });
  const configuration: Configuration = {
    adapter: adapter as unknown as Configuration['adapter'],
    clients: [],
    // signed with node:crypto (see node-signing-key.ts); only the active key signs
    jwks: { keys: deps.privateJwks.keys.map((jwk) => new NodeSigningKey(jwk, jwk.alg as SigningAlg)) },
    cookies: { keys: deps.cookieKeys },
    // tls_client_auth stands for every workload-bound client (see WORKLOAD_SUBJECT_MARKER)
    clientAuthMethods: ['private_key_jwt', 'tls_client_auth'],
    clientDefaults: {
      grant_types: [CLIENT_CREDENTIALS],
      response_types: [],
      token_endpoint_auth_method: 'private_key_jwt',
      // oidc-provider's default (RS256) would make every stored client invalid without an RSA key
      id_token_signed_response_alg: alg,
    },
    enabledJWA: {
      clientAuthSigningAlgValues: [...CLIENT_SIGNING_ALGS],
      dPoPSigningAlgValues: [...CLIENT_SIGNING_ALGS],
      idTokenSigningAlgValues: [alg],
      requestObjectSigningAlgValues: [],
      introspectionSigningAlgValues: [alg],
      userinfoSigningAlgValues: [alg],
      authorizationSigningAlgValues: [alg],
    },
    clockTolerance: 5,
    fetch: deps.jwksUri.fetch,
    fetchResponseBodyLimits: { jwks_uri: config.jwksUri.maxBytes, sector_identifier_uri: 0, 'client_id metadata document': 0 },
    responseTypes: ['none'],
    scopes: [],
    claims: {},
    routes: {
      token: '/token',
      jwks: '/jwks',
      introspection: '/introspect',
      revocation: '/revoke',
      registration: '/register',
    },
    features: {
      devInteractions: { enabled: false },
      externalSigningSupport: { enabled: true, ack: 'experimental-01' },
      // machine-to-machine only; what oidc-provider mounts regardless (/auth, /session/end/confirm)
      // is never reached: Sigil's route table (src/server/routes.ts) answers 404 first
      pushedAuthorizationRequests: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      clientCredentials: { enabled: true },
      // only as the door for workload-bound clients Sigil authenticated itself; tokens are bound by
      // Sigil's grants (cnf.x5t#S256 or cnf.jkt), not by oidc-provider
      mTLS: { enabled: true, tlsClientAuth: true, selfSignedTlsClientAuth: false, certificateBoundAccessTokens: false, ...workloadHooks },
      introspection: {
        enabled: true,
        // a client sees its own tokens; a gateway (--can-introspect) sees all
        allowedPolicy: async (_ctx, client, token) =>
          client.clientId === token.clientId || (await deps.clients.find(client.clientId))?.canIntrospect === true,
      },
      revocation: { enabled: true },
      // RFC 7591/7592 are served by Sigil itself (src/server/registration-api.ts)
      registration: { enabled: false },
      userinfo: { enabled: false },
      // proofs are checked by Sigil's grants (dpop-proof.ts); this announces DPoP in discovery
      dPoP: {
        enabled: true,
        ...(config.dpopRequireNonce ? { nonceSecret: deps.nonceSecret, requireNonce: () => true } : {}),
      },
      resourceIndicators: {
        enabled: true,
        // audiences are decided by Sigil's grants; these keep oidc-provider's own paths consistent
        defaultResource: async (ctx) => {
          const record = ctx.oidc.client && (await deps.clients.find(ctx.oidc.client.clientId));
          return record?.audiences[0];
        },
        useGrantedResource: () => true,
        getResourceServerInfo: async (ctx, resource) => {
          const record = ctx.oidc.client && (await deps.clients.find(ctx.oidc.client.clientId));
          if (!record) throw new errors.InvalidTarget();
          const audience = resolveAudience(resource, record);
          return {
            audience,
            scope: record.scope.join(' '),
            accessTokenFormat: 'jwt',
            accessTokenTTL: config.accessTokenTtl,
            jwt: { sign: deps.signing },
          };
        },
      },
    },
    discovery: {
      // draft-ietf-oauth-status-list: where gateways find every status list
      status_list_aggregation_endpoint: `${config.issuer}/status-lists`,
      registration_endpoint: `${config.issuer}/register`,
    },
    // every access token names its bit in a status list (draft-ietf-oauth-status-list)
    async extraTokenClaims(_ctx, token) {
      const expiresAt = Math.floor(Date.now() / 1000) + (token.expiration ?? config.accessTokenTtl);
      const { listId, idx } = await deps.statusIndices.allocate(expiresAt);
      return { ...pendingClaims.get(token), status: { status_list: { idx, uri: `${config.issuer}${statusListPath(listId)}` } } };
    },
    ttl: {
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.accessTokenTtl,
      // exchanged tokens carry a shorter TTL in their resource server when the subject expires sooner
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.accessTokenTtl,
    },
    async assertJwtClientAuthClaimsAndHeader(ctx, claims, header, client) {
      // draft-ietf-oauth-rfc7523bis: aud is the issuer alone, and no other kind of JWT stands in
      const shape = assertionTypeProblem(header.typ) ?? assertionAudienceProblem(claims.aud, assertionAudiences);
      if (shape) throw new errors.InvalidClientAuth(shape);
      const weakKeys = registeredKeysProblem((client as { jwks?: { keys: JWK[] } }).jwks);
      if (weakKeys) throw new errors.InvalidClientAuth(weakKeys);
      const now = Math.floor(Date.now() / 1000);
      if (typeof claims.exp === 'number' && claims.exp - now > MAX_ASSERTION_LIFETIME_SECONDS) {
        throw new errors.InvalidClientAuth(`client assertion must expire within ${MAX_ASSERTION_LIFETIME_SECONDS} seconds`);
      }
      if (typeof claims.iat === 'number' && claims.iat > now + 5) {
        throw new errors.InvalidClientAuth('client assertion iat is in the future');
      }
      if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf > now + 5)) {
        throw new errors.InvalidClientAuth('client assertion is not yet valid');
      }
      // keys from a jwks_uri are trusted only for their (bounded) cache lifetime
      const keysProblem = client.jwksUri && await deps.jwksUri.currentKeyProblem(client.jwksUri, String(ctx.oidc.params?.client_assertion));
      if (keysProblem) throw new errors.InvalidClientAuth(keysProblem);
    },
    // every error, also for Accept: text/html, is RFC 6749 §5.2 JSON
    async renderError(ctx, out) {
      ctx.type = 'application/json';
      ctx.body = out;
    },
  };

  const provider = new Provider(config.issuer, configuration);
  // the issuer is reached through whatever proxy/balancer fronts it; Sigil pins URLs itself (see app.ts)
  provider.proxy = false;

  provider.use(structuredTokenAnswers(deps, claims));
  const mtls: MtlsMetadata = {
    workloadAuthMethods: deps.workloadAuthMethods ?? [],
    certificates: config.tls !== undefined || config.clientCertificates.proxyHeader !== undefined,
    mtlsBaseUrl: config.clientCertificates.mtlsBaseUrl,
  };
  provider.use(onlyAdvertisedMetadata(mtls));
  const proofs = { verifier: deps.proofs, tokenEndpoint: new URL(`${config.issuer}/token`).href };
  const endpoint: TokenEndpointDeps = { claims, signing: deps.signing, pendingClaims, onIssued: deps.onIssued };
  const accessTokenTtl = config.accessTokenTtl;

  registerGrant(provider, CLIENT_CREDENTIALS, clientCredentialsGrant({ clients: deps.clients, accessTokenTtl, proofs }), clientCredentialsParameters, endpoint, ['resource']);
  registerGrant(provider, TOKEN_EXCHANGE, tokenExchangeGrant({
    clients: deps.clients, accessTokenTtl, proofs, verify: deps.tokens.verify, revocationList: deps.tokens.revocationList, refreshTokens: deps.refreshTokens,
    chains: deps.chains, maxDepth: config.maxDelegationDepth,
  }), exchangeParameters, endpoint);
  registerGrant(provider, REFRESH_TOKEN, refreshTokenGrant({ clients: deps.clients, accessTokenTtl, proofs, refreshTokens: deps.refreshTokens }), refreshParameters, endpoint);

  const refused = (ctx: KoaContextWithOIDC, err: errors.OIDCProviderError) => {
    deps.onRefused(ctx, {
      error: err.error ?? 'server_error',
      reason: (err as { error_detail?: string }).error_detail ?? err.error_description,
      clientId: ctx.oidc?.client?.clientId,
      grantType: typeof ctx.oidc?.params?.grant_type === 'string' ? (ctx.oidc.params.grant_type as string) : undefined,
    });
  };
  provider.on('grant.error', refused);
  provider.on('server_error', (ctx: KoaContextWithOIDC, err: Error) => {
    deps.log.error({ requestId: ctx.state?.requestId, route: ctx.oidc?.route, err: { name: err.name, message: err.message, stack: err.stack } }, 'unexpected error');
    if (ctx.oidc?.route === 'token') refused(ctx, Object.assign(err, { error: 'server_error' }) as unknown as errors.OIDCProviderError);
  });
  return provider;
}

/** The discovery document, cut down to what Sigil serves (see discovery.ts), and cacheable. */
function onlyAdvertisedMetadata(mtls: MtlsMetadata) {
  return async function advertised(ctx: KoaContextWithOIDC, next: () => Promise<void>) {
    await next();
    if (ctx.oidc?.route !== 'discovery' || ctx.status !== 200) return;
    ctx.body = advertisedMetadata(ctx.body as Record<string, unknown>, mtls);
    ctx.set('Cache-Control', `public, max-age=${DISCOVERY_MAX_AGE_SECONDS}`);
  };
}

/**
 * After oidc-provider answered: held replay answers given, refusals corrected (error-rewrites.ts), and
 * oidc-provider's refusal of JWT access tokens at introspection and revocation (unsupported_token_type,
 * after it authenticated the client) replaced by Sigil's own answer.
 */
function structuredTokenAnswers(deps: ProviderDeps, claims: ReplayClaims) {
  return async function structuredTokens(ctx: KoaContextWithOIDC, next: () => Promise<void>) {
    await next();
    // a store away, or replay records being recovered after a loss: the client should come back shortly
    if (ctx.status === 503) ctx.set('Retry-After', '1');
    const route = ctx.oidc?.route;
    if (route === 'token') {
      const unconfirmed = claims.settle(ctx);
      if (unconfirmed) await replayFirst(ctx, unconfirmed, deps.log);
      rewriteRefusal(route, ctx);
      return;
    }
    if (route !== 'introspection' && route !== 'revocation') return;
    if (rewriteRefusal(route, ctx)) return;
    const body = ctx.body as { error?: string; error_description?: string } | undefined;
    const token = ctx.oidc.params?.token;
    if (typeof token !== 'string') return;
    // only once oidc-provider authenticated the client: its refusal of anything JWT-shaped, or a 200
    const structured = body?.error === 'unsupported_token_type';
    const refresh = ctx.status === 200 && looksLikeRefreshToken(token);
    if (!ctx.oidc.client || (!structured && !refresh)) return;
    const requester = await deps.clients.find(ctx.oidc.client.clientId);
    if (!requester) return;
    ctx.status = 200;
    ctx.set('Cache-Control', 'no-store');
    if (route === 'introspection') {
      ctx.body = structured ? await introspectAccessToken(deps.tokens, token, requester) : await deps.refreshTokens.introspect(token, requester);
    } else {
      if (structured) await revokeOwnAccessToken(deps.tokens, token, requester.clientId, ctx.state.requestId as string | undefined);
      else await deps.refreshTokens.revoke(token, requester.clientId);
      ctx.body = '';
    }
  };
}

/**
 * A held replay answer for a request that never reached its grant's replay step (oidc-provider
 * refused it first, e.g. for a duplicated parameter). A replay is still what such a request is told,
 * as it would have been had the claim been awaited where oidc-provider made it.
 */
async function replayFirst(ctx: KoaContextWithOIDC, unconfirmed: Promise<void>, log: Logger): Promise<void> {
  try {
    await unconfirmed;
  } catch (err) {
    const e = err as errors.OIDCProviderError;
    if (ctx.status === 200) log.error({ requestId: ctx.state.requestId, error: e.error }, 'a token was answered before its replay check; refused');
    ctx.status = e.statusCode ?? 500;
    ctx.body = { error: e.error ?? 'server_error', error_description: e.error_description ?? 'internal error' };
    if (ctx.status === 503) ctx.set('Retry-After', '1');
  }
}
