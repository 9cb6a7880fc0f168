// The authorization server metadata Sigil publishes (RFC 8414), as an explicit allow-list: a field
// is advertised only when Sigil really serves what it names, whatever oidc-provider would add for
// browser flows (authorization_endpoint, response_modes_supported, claims_supported, scopes_supported
// ["openid"], id_token_signing_alg_values_supported, code_challenge_methods_supported, ...).

/** Every field of the discovery document, in the order it is written. */
export const ADVERTISED_METADATA = [
  'issuer',
  'token_endpoint',
  'jwks_uri',
  'registration_endpoint',
  'revocation_endpoint',
  'introspection_endpoint',
  'status_list_aggregation_endpoint',
  'grant_types_supported',
  // RFC 8414 requires the member; Sigil has no authorization endpoint, so no response type
  'response_types_supported',
  'token_endpoint_auth_methods_supported',
  'token_endpoint_auth_signing_alg_values_supported',
  'revocation_endpoint_auth_methods_supported',
  'revocation_endpoint_auth_signing_alg_values_supported',
  'introspection_endpoint_auth_methods_supported',
  'introspection_endpoint_auth_signing_alg_values_supported',
  'dpop_signing_alg_values_supported',
] as const;

/** how long a client may cache the document: it changes only with the server's configuration */
export const DISCOVERY_MAX_AGE_SECONDS = 3600;

type Metadata = Record<string, unknown>;

/**
 * The client authentication methods Sigil serves itself, before oidc-provider (src/workload/): the names
 * draft-ietf-oauth-spiffe-client-auth §4 has an AS list in token_endpoint_auth_methods_supported (and
 * the revocation / introspection lists). A federated JWT is an RFC 7523 jwt-bearer assertion, which
 * private_key_jwt already announces.
 */
export const WORKLOAD_AUTH_METHODS = ['spiffe_jwt'] as const;

/**
 * oidc-provider's tls_client_auth is only the door workload-bound clients pass through (src/oidc/
 * provider.ts, WORKLOAD_SUBJECT_MARKER), not RFC 8705 as a client would read it: it is advertised only
 * when the caller says Sigil really serves mTLS (extraAuthMethods).
 */
const INTERNAL_AUTH_METHODS: ReadonlySet<string> = new Set(['tls_client_auth', 'self_signed_tls_client_auth']);

/**
 * The document Sigil serves, from the one oidc-provider built (endpoint URLs, grant types and
 * algorithms as it enforces them). Introspection and revocation authenticate clients exactly as the
 * token endpoint does (oidc-provider has one client authentication); RFC 8414 would otherwise let a
 * reader assume client_secret_basic there.
 */
export function advertisedMetadata(built: Metadata, extraAuthMethods: readonly string[] = []): Metadata {
  const source: Metadata = { ...built, response_types_supported: [] };
  if (Array.isArray(built.token_endpoint_auth_methods_supported)) {
    const methods = (built.token_endpoint_auth_methods_supported as unknown[]).filter((m) => typeof m === 'string' && !INTERNAL_AUTH_METHODS.has(m));
    for (const m of extraAuthMethods) if (!methods.includes(m)) methods.push(m);
    source.token_endpoint_auth_methods_supported = methods;
  }
  for (const endpoint of ['revocation', 'introspection'] as const) {
    if (built[`${endpoint}_endpoint`] === undefined) continue;
    source[`${endpoint}_endpoint_auth_methods_supported`] = source.token_endpoint_auth_methods_supported;
    source[`${endpoint}_endpoint_auth_signing_alg_values_supported`] = built.token_endpoint_auth_signing_alg_values_supported;
  }
  const out: Metadata = {};
  for (const field of ADVERTISED_METADATA) {
    if (source[field] !== undefined) out[field] = source[field];
  }
  return out;
}
