// Creating clients: the input the admin API accepts, checked once, and the JSON shape the CLI prints.
import { randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import { GRANT_TYPES, type ClientRecord, type GrantType, type NewClient } from './client-store.js';
import { printableTextProblem, uriTextProblem } from '../input/printable-text.js';
import { jwksProblems } from './client-keys.js';
import { AUTH_METHOD_OF, bindingView, parseWorkloadBinding, WorkloadInputError } from '../workload/workload-binding.js';

export const ADMIN_CLIENT_ID = 'sigil-admin';
export const ADMIN_SCOPE = 'sigil:admin';
export const adminAudience = (issuer: string) => `${issuer}/admin`;

export class ClientInputError extends Error {}

/** RFC 6749 scope-token: printable ASCII except space, " and \ */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/** The longest client name, in characters. */
export const MAX_CLIENT_NAME = 200;
/** A client name: printable text (it is shown in operators' terminals), trimmed. */
export function clientNameProblem(name: unknown, field: string): string | undefined {
  return printableTextProblem(name, field, MAX_CLIENT_NAME);
}

function absoluteUri(value: unknown, what: string): string {
  if (typeof value !== 'string' || uriTextProblem(value, what)) {
    throw new ClientInputError(`${what} must be an absolute URI of at most 2000 characters, written in printable ASCII without spaces (percent-encode anything else)`);
  }
  const u = URL.parse(value);
  if (!u || !/^[a-z][a-z0-9+.-]*:$/i.test(u.protocol) || value.includes('#')) throw new ClientInputError(`${what} must be an absolute URI without a fragment, got ${JSON.stringify(value)}`);
  return value;
}

function uriList(value: unknown, what: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > 50) throw new ClientInputError(`${what} must be a list of at most 50 absolute URIs`);
  return [...new Set(value.map((v) => absoluteUri(v, what)))];
}

/** `issuer` is needed to keep the admin plane's audience and scope out of ordinary clients' reach. */
export function parseNewClient(body: unknown, issuer: string): NewClient {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ClientInputError('the request body must be a JSON object');
  const b = body as Record<string, unknown>;
  const name = b.name;
  const nameProblem = clientNameProblem(name, 'name');
  if (nameProblem) throw new ClientInputError(nameProblem);
  let jwks: { keys: JWK[] } | undefined;
  let jwksUri: string | undefined;
  let binding: ReturnType<typeof parseWorkloadBinding>;
  try {
    binding = parseWorkloadBinding(b);
  } catch (err) {
    if (err instanceof WorkloadInputError) throw new ClientInputError(err.message);
    throw err;
  }
  const credentials = (b.jwks !== undefined ? 1 : 0) + (b.jwks_uri !== undefined ? 1 : 0) + (binding.workload ? 1 : 0);
  if (credentials !== 1) {
    throw new ClientInputError('give exactly one credential: jwks, jwks_uri, spiffe_id, federated_subject, tls_client_auth_subject_dn, tls_client_auth_san_{dns,uri,ip,email} or self_signed_certificates');
  }
  if (binding.workload) {
    // a workload identity, no registered keys
  } else if (b.jwks !== undefined) {
    const problems = jwksProblems(b.jwks);
    if (problems.length) throw new ClientInputError(`jwks: ${problems.join('; ')}`);
    jwks = { keys: (b.jwks as { keys: JWK[] }).keys };
  } else {
    jwksUri = absoluteUri(b.jwks_uri, 'jwks_uri');
    const u = new URL(jwksUri);
    const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname);
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback)) throw new ClientInputError('jwks_uri must use https');
  }
  const scopeRaw = b.scope ?? '';
  if (typeof scopeRaw !== 'string') throw new ClientInputError('scope must be a space-delimited string');
  const scope = [...new Set(scopeRaw.split(' ').filter(Boolean))];
  const badScope = scope.find((s) => !SCOPE_TOKEN.test(s));
  if (badScope !== undefined) throw new ClientInputError(`scope value ${JSON.stringify(badScope)} contains characters RFC 6749 does not allow`);
  if (scope.includes(ADMIN_SCOPE)) throw new ClientInputError(`scope ${ADMIN_SCOPE} is reserved for the admin client`);
  const audiences = uriList(b.audiences, 'audiences');
  if (audiences.some((a) => a === adminAudience(issuer) || a.startsWith(`${issuer}/`) || a === issuer)) {
    throw new ClientInputError('audiences must not name Sigil itself; they are the APIs the client calls');
  }
  const grantTypes = (b.grant_types ?? ['client_credentials']) as unknown;
  if (!Array.isArray(grantTypes) || grantTypes.length === 0 || grantTypes.some((g) => !(GRANT_TYPES as readonly unknown[]).includes(g))) {
    throw new ClientInputError(`grant_types must be a non-empty list drawn from ${GRANT_TYPES.join(', ')}`);
  }
  // certificate-bound clients (token_binding mtls) prove possession with their TLS certificate, not DPoP
  const dpop = b.dpop ?? (binding.tokenBinding === 'mtls' ? 'optional' : 'required');
  if (dpop !== 'required' && dpop !== 'optional') throw new ClientInputError('dpop must be "required" or "optional"');
  if (binding.tokenBinding === 'mtls' && dpop === 'required') throw new ClientInputError('token_binding "mtls" binds tokens to the client certificate; dpop cannot also be "required"');
  if (b.can_introspect !== undefined && typeof b.can_introspect !== 'boolean') throw new ClientInputError('can_introspect must be a boolean');
  return {
    clientId: `${randomBytes(16).toString('hex')}`,
    name: (name as string).trim(),
    scope,
    audiences,
    serves: uriList(b.serves, 'serves'),
    grantTypes: [...new Set(grantTypes as GrantType[])],
    dpopRequired: dpop === 'required',
    canIntrospect: b.can_introspect === true,
    isAdmin: false,
    jwks,
    jwksUri,
    workload: binding.workload,
    tokenBinding: binding.tokenBinding,
  };
}

/** What clientView shows of a workload binding (workload-binding.ts bindingView) */
export interface WorkloadView {
  spiffe_id?: string;
  federated_subject?: { issuer: string; subject: string };
  required_claims?: Record<string, string>;
  tls_client_auth_subject_dn?: string;
  tls_client_auth_san_dns?: string;
  tls_client_auth_san_uri?: string;
  tls_client_auth_san_ip?: string;
  tls_client_auth_san_email?: string;
  self_signed_certificate_thumbprints?: string[];
}

/** The client object every CLI command and admin response shows. */
export function clientView(c: ClientRecord) {
  return {
    client_id: c.clientId,
    name: c.name,
    status: c.status,
    scope: c.scope.join(' '),
    audiences: c.audiences,
    serves: c.serves,
    grant_types: c.grantTypes,
    dpop: c.dpopRequired ? 'required' : 'optional',
    can_introspect: c.canIntrospect,
    /** private_key_jwt, or for workload-bound clients spiffe_jwt, federated_jwt, tls_client_auth, self_signed_tls_client_auth */
    token_endpoint_auth_method: c.workload ? AUTH_METHOD_OF[c.workload.kind] : 'private_key_jwt',
    ...(c.workload ? {} : c.jwksUri ? { jwks_uri: c.jwksUri } : { jwks: c.jwks }),
    ...(bindingView(c.workload) as WorkloadView),
    token_binding: c.tokenBinding,
    created_at: c.createdAt.toISOString(),
    updated_at: c.updatedAt.toISOString(),
    ...(c.revokedAt ? { revoked_at: c.revokedAt.toISOString(), revoked_by: c.revokedBy, revoked_reason: c.revokedReason } : {}),
  };
}
