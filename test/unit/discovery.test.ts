// The discovery allow-list alone: whatever oidc-provider puts in its document, only Sigil's fields leave.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ADVERTISED_METADATA, advertisedMetadata, WORKLOAD_AUTH_METHODS } from '../../src/oidc/discovery.js';

const ISSUER = 'https://as.example';

/** the document oidc-provider 9.13.3 builds with Sigil's configuration, and more it could add */
const built = {
  acr_values_supported: ['urn:x'],
  authorization_endpoint: `${ISSUER}/auth`,
  claims_parameter_supported: false,
  claims_supported: ['sub', 'sid', 'auth_time', 'iss'],
  code_challenge_methods_supported: ['S256'],
  grant_types_supported: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange', 'refresh_token'],
  issuer: ISSUER,
  jwks_uri: `${ISSUER}/jwks`,
  registration_endpoint: `${ISSUER}/register`,
  authorization_response_iss_parameter_supported: true,
  response_modes_supported: ['form_post', 'fragment', 'query'],
  response_types_supported: ['none'],
  scopes_supported: ['openid'],
  subject_types_supported: ['public'],
  token_endpoint_auth_methods_supported: ['private_key_jwt'],
  token_endpoint_auth_signing_alg_values_supported: ['ES256', 'EdDSA'],
  token_endpoint: `${ISSUER}/token`,
  id_token_signing_alg_values_supported: ['ES256'],
  request_uri_parameter_supported: false,
  request_parameter_supported: true,
  introspection_endpoint: `${ISSUER}/introspect`,
  introspection_signing_alg_values_supported: ['ES256'],
  dpop_signing_alg_values_supported: ['ES256', 'EdDSA'],
  revocation_endpoint: `${ISSUER}/revoke`,
  claim_types_supported: ['normal'],
  end_session_endpoint: `${ISSUER}/session/end`,
  userinfo_endpoint: `${ISSUER}/me`,
  device_authorization_endpoint: `${ISSUER}/device/auth`,
  pushed_authorization_request_endpoint: `${ISSUER}/request`,
  backchannel_authentication_endpoint: `${ISSUER}/backchannel`,
  tls_client_certificate_bound_access_tokens: true,
  status_list_aggregation_endpoint: `${ISSUER}/status-lists`,
};

describe('discovery allow-list', () => {
  it('keeps only the advertised fields, in their order, whatever else was built', () => {
    const md = advertisedMetadata(built, { certificates: true, mtlsBaseUrl: 'https://mtls.as.example' });
    assert.deepEqual(Object.keys(md), [...ADVERTISED_METADATA]);
  });

  it('announces no mTLS when no client certificate can reach Sigil (no TLS, no proxy header)', () => {
    const md = advertisedMetadata({ ...built, token_endpoint_auth_methods_supported: ['private_key_jwt', 'tls_client_auth'] });
    assert.equal(md.tls_client_certificate_bound_access_tokens, undefined);
    assert.equal(md.mtls_endpoint_aliases, undefined);
    assert.deepEqual(md.token_endpoint_auth_methods_supported, ['private_key_jwt']);
    assert.deepEqual(md.introspection_endpoint_auth_methods_supported, ['private_key_jwt']);
  });

  it('announces RFC 8705 when certificates can arrive: both methods, bound tokens, and no aliases when served at the issuer', () => {
    const md = advertisedMetadata({ ...built, token_endpoint_auth_methods_supported: ['private_key_jwt', 'tls_client_auth'] }, { certificates: true });
    assert.equal(md.tls_client_certificate_bound_access_tokens, true);
    assert.deepEqual(md.token_endpoint_auth_methods_supported, ['private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth']);
    assert.deepEqual(md.revocation_endpoint_auth_methods_supported, md.token_endpoint_auth_methods_supported);
    assert.equal(md.mtls_endpoint_aliases, undefined);
  });

  it('aliases the client-authenticating endpoints at MTLS_BASE_URL (RFC 8705 §5)', () => {
    const md = advertisedMetadata(built, { certificates: true, mtlsBaseUrl: 'https://mtls.as.example' });
    assert.deepEqual(md.mtls_endpoint_aliases, {
      token_endpoint: 'https://mtls.as.example/token',
      revocation_endpoint: 'https://mtls.as.example/revoke',
      introspection_endpoint: 'https://mtls.as.example/introspect',
    });
  });

  it('says there is no response type, and that introspection and revocation take the token endpoint\'s client authentication', () => {
    const md = advertisedMetadata(built);
    assert.deepEqual(md.response_types_supported, []);
    for (const endpoint of ['revocation', 'introspection']) {
      assert.deepEqual(md[`${endpoint}_endpoint_auth_methods_supported`], ['private_key_jwt']);
      assert.deepEqual(md[`${endpoint}_endpoint_auth_signing_alg_values_supported`], ['ES256', 'EdDSA']);
    }
    assert.equal(md.issuer, ISSUER);
    assert.equal(md.token_endpoint, `${ISSUER}/token`);
  });

  it('names no authentication for an endpoint that is not there', () => {
    const { revocation_endpoint: _r, ...withoutRevocation } = built;
    const md = advertisedMetadata(withoutRevocation);
    assert.equal(md.revocation_endpoint, undefined);
    assert.equal(md.revocation_endpoint_auth_methods_supported, undefined);
    assert.equal(md.revocation_endpoint_auth_signing_alg_values_supported, undefined);
    assert.deepEqual(md.introspection_endpoint_auth_methods_supported, ['private_key_jwt']);
  });

  it('announces JWT-SVID client authentication (spiffe_jwt, draft-ietf-oauth-spiffe-client-auth §4), when it is served, at every endpoint that authenticates clients', () => {
    const md = advertisedMetadata(built, { workloadAuthMethods: WORKLOAD_AUTH_METHODS, certificates: false });
    for (const field of ['token', 'revocation', 'introspection']) {
      assert.deepEqual(md[`${field}_endpoint_auth_methods_supported`], ['private_key_jwt', 'spiffe_jwt']);
    }
  });

  it('hides tls_client_auth, the internal door of workload-bound clients, unless mTLS is said to be served', () => {
    const withDoor = { ...built, token_endpoint_auth_methods_supported: ['private_key_jwt', 'tls_client_auth'] };
    assert.deepEqual(advertisedMetadata(withDoor).token_endpoint_auth_methods_supported, ['private_key_jwt']);
    const served = advertisedMetadata(withDoor, { workloadAuthMethods: WORKLOAD_AUTH_METHODS, certificates: true });
    const all = ['private_key_jwt', 'spiffe_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'];
    assert.deepEqual(served.token_endpoint_auth_methods_supported, all);
    assert.deepEqual(served.introspection_endpoint_auth_methods_supported, all);
  });
});
