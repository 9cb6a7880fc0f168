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
  // RFC 8705 §3.3 and §5: only when client certificates can reach Sigil (see MtlsMetadata)
  'tls_client_certificate_bound_access_tokens',
  'mtls_endpoint_aliases',
] as const;

/** the certificate-based client authentication methods (RFC 8705 §2) */
const MTLS_AUTH_METHODS = ['tls_client_auth', 'self_signed_tls_client_auth'];

/**
 * The client authentication methods Sigil serves itself, before oidc-provider (src/workload/): the names
 * draft-ietf-oauth-spiffe-client-auth §4 has an AS list in token_endpoint_auth_methods_supported (and
 * the revocation / introspection lists). A federated JWT is an RFC 7523 jwt-bearer assertion, which
 * private_key_jwt already announces.
 */
export const WORKLOAD_AUTH_METHODS = ['spiffe_jwt'] as const;

/** What Sigil tells clients about the client authentication it serves itself: workload identities, mTLS (RFC 8705). */
export interface MtlsMetadata {
  /** served before oidc-provider (WORKLOAD_AUTH_METHODS), announced after oidc-provider's own */
  workloadAuthMethods?: readonly string[];
  /** client certificates can reach Sigil: its own TLS listener, or a trusted proxy's header */
  certificates: boolean;
  /** MTLS_BASE_URL: where clients present certificates, when that is not the issuer */
  mtlsBaseUrl?: string;
}

/** the endpoints a client authenticates at, which RFC 8705 §5 aliases */
const ALIASED_ENDPOINTS = ['token_endpoint', 'revocation_endpoint', 'introspection_endpoint'];

/** how long a client may cache the document: it changes only with the server's configuration */
export const DISCOVERY_MAX_AGE_SECONDS = 3600;

type Metadata = Record<string, unknown>;

/**
 * The document Sigil serves, from the one oidc-provider built (endpoint URLs, grant types and
 * algorithms as it enforces them). Introspection and revocation authenticate clients exactly as the
 * token endpoint does (oidc-provider has one client authentication); RFC 8414 would otherwise let a
 * reader assume client_secret_basic there.
 */
export function advertisedMetadata(built: Metadata, mtls: MtlsMetadata = { certificates: false }): Metadata {
  const source: Metadata = { ...built, response_types_supported: [] };
  // oidc-provider lists tls_client_auth whenever its mTLS door is open (every workload client goes
  // through it, see provider.ts); what is announced is what a certificate can do here
  const methods = ((built.token_endpoint_auth_methods_supported as string[] | undefined) ?? []).filter((m) => !MTLS_AUTH_METHODS.includes(m));
  if (built.token_endpoint_auth_methods_supported !== undefined) {
    source.token_endpoint_auth_methods_supported = [...methods, ...(mtls.workloadAuthMethods ?? []), ...(mtls.certificates ? MTLS_AUTH_METHODS : [])];
  }
  // never oidc-provider's own (it binds no tokens to certificates itself): Sigil's answer or nothing
  delete source.tls_client_certificate_bound_access_tokens;
  delete source.mtls_endpoint_aliases;
  if (mtls.certificates) {
    source.tls_client_certificate_bound_access_tokens = true;
    if (mtls.mtlsBaseUrl !== undefined) {
      const issuer = String(built.issuer);
      const aliases: Metadata = {};
      for (const endpoint of ALIASED_ENDPOINTS) {
        const url = built[endpoint];
        if (typeof url === 'string' && url.startsWith(`${issuer}/`)) aliases[endpoint] = `${mtls.mtlsBaseUrl}${url.slice(issuer.length)}`;
      }
      source.mtls_endpoint_aliases = aliases;
    }
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
