// Dynamic registration policy (RFC 7591, RFC 7592): which client metadata a partner may send, what the
// registered client becomes, and what a registrant may later change. Refusals name what to fix.
import { randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import { GRANT_TYPES, type ClientRecord, type GrantType, type NewClient } from '../clients/client-store.js';
import { uriTextProblem } from '../input/printable-text.js';
import { ClientInputError, clientNameProblem, parseNewClient } from '../clients/admin-clients.js';
import { jwksProblems } from '../clients/client-keys.js';
import { CLIENT_SIGNING_ALGS, KEY_TYPE_OF, type ClientSigningAlg } from '../keys/algorithms.js';
import { jwksUriProblem, type JwksUriPolicy } from '../outbound/jwks-fetch.js';

/** A refusal of client metadata: 400 invalid_client_metadata with this message as error_description. */
export class RegistrationError extends Error {
  override name = 'RegistrationError';
}

export const DEFAULT_CLIENT_NAME = 'registered client';

/** What an initial access token grants the client it registers. */
export interface RegistrationGrant {
  scope: string[];
  audiences: string[];
}

/** What a registrant chose, checked. */
export interface RegisteredMetadata {
  name: string;
  grantTypes: GrantType[];
  scope: string[];
  audiences: string[];
  jwks?: { keys: JWK[] };
  jwksUri?: string;
}

export type UriPolicy = Pick<JwksUriPolicy, 'allowHttpLoopback' | 'allowedHosts'>;

const SECRET_METHODS = new Set(['client_secret_basic', 'client_secret_post', 'client_secret_jwt']);
/** grant types of flows that send a browser through the authorization endpoint */
const REDIRECT_GRANTS = new Set(['authorization_code', 'implicit']);
/** RFC 7592 §2.2: sent back by some clients, ignored by the server */
const IGNORED_ON_UPDATE = new Set(['registration_access_token', 'registration_client_uri', 'client_secret_expires_at', 'client_id_issued_at']);

const allowedGrants = GRANT_TYPES.join(', ');

function asObject(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new RegistrationError('the request body must be a JSON object of client metadata (RFC 7591)');
  return body as Record<string, unknown>;
}

function refuseSecrets(b: Record<string, unknown>): void {
  if (b.client_secret !== undefined) {
    throw new RegistrationError('client_secret is not accepted: Sigil issues no client secrets; use token_endpoint_auth_method "private_key_jwt" and register your public keys (jwks or jwks_uri)');
  }
}

function authMethod(b: Record<string, unknown>): void {
  const m = b.token_endpoint_auth_method;
  if (m === undefined || m === 'private_key_jwt') return;
  if (typeof m !== 'string') throw new RegistrationError('token_endpoint_auth_method must be the string "private_key_jwt"');
  if (m === 'none') throw new RegistrationError('token_endpoint_auth_method "none" (a public client) is not supported; use "private_key_jwt" with jwks or jwks_uri');
  if (SECRET_METHODS.has(m)) throw new RegistrationError(`token_endpoint_auth_method "${m}" relies on a shared client secret, which Sigil does not issue; use "private_key_jwt" with jwks or jwks_uri`);
  throw new RegistrationError(`token_endpoint_auth_method ${JSON.stringify(m)} is not supported; use "private_key_jwt"`);
}

function signingAlg(b: Record<string, unknown>): string | undefined {
  const alg = b.token_endpoint_auth_signing_alg;
  if (alg === undefined) return undefined;
  if (typeof alg !== 'string' || !(CLIENT_SIGNING_ALGS as readonly string[]).includes(alg)) {
    throw new RegistrationError(`token_endpoint_auth_signing_alg ${JSON.stringify(alg)} is not supported; use one of ${CLIENT_SIGNING_ALGS.join(', ')}`);
  }
  return alg;
}

function noRedirects(b: Record<string, unknown>): void {
  for (const [field, what] of [
    ['redirect_uris', 'redirect_uris are not accepted: Sigil serves machine-to-machine clients and supports no redirect-based flow; remove redirect_uris'],
    ['response_types', 'response_types are not accepted: Sigil has no authorization endpoint (no code, token or id_token responses); remove response_types'],
  ] as const) {
    const v = b[field];
    if (v === undefined) continue;
    if (!Array.isArray(v)) throw new RegistrationError(`${field} must be a list; Sigil accepts only an empty one`);
    if (v.length) throw new RegistrationError(what);
  }
}

function grantTypes(b: Record<string, unknown>): GrantType[] {
  const raw = b.grant_types ?? ['client_credentials'];
  if (!Array.isArray(raw) || raw.length === 0 || raw.some((g) => typeof g !== 'string')) {
    throw new RegistrationError(`grant_types must be a non-empty list drawn from ${allowedGrants}`);
  }
  for (const g of raw as string[]) {
    if (REDIRECT_GRANTS.has(g)) throw new RegistrationError(`grant type "${g}" needs browser redirects, which Sigil does not support; allowed: ${allowedGrants}`);
    if (!(GRANT_TYPES as readonly string[]).includes(g)) throw new RegistrationError(`grant type ${JSON.stringify(g)} is not supported; allowed: ${allowedGrants}`);
  }
  return [...new Set(raw as GrantType[])];
}

function dpop(b: Record<string, unknown>): void {
  const v = b.dpop_bound_access_tokens;
  if (v !== undefined && v !== true) throw new RegistrationError('dpop_bound_access_tokens must be true or absent: every registered client gets DPoP-bound tokens (RFC 9449)');
}

function clientName(b: Record<string, unknown>, fallback: string): string {
  const name = b.client_name;
  if (name === undefined) return fallback;
  const problem = clientNameProblem(name, 'client_name');
  if (problem) throw new RegistrationError(problem);
  return (name as string).trim();
}

/** Exactly one of jwks / jwks_uri, each acceptable. */
function keys(b: Record<string, unknown>, policy: UriPolicy, alg: string | undefined): { jwks?: { keys: JWK[] }; jwksUri?: string } {
  if ((b.jwks === undefined) === (b.jwks_uri === undefined)) {
    throw new RegistrationError('give exactly one of jwks or jwks_uri: the public keys your client assertions are signed with');
  }
  if (b.jwks !== undefined) {
    const problems = jwksProblems(b.jwks);
    if (problems.length) throw new RegistrationError(`jwks: ${problems.join('; ')}`);
    const keySet = (b.jwks as { keys: JWK[] }).keys;
    if (alg && !keySet.some((k) => k.kty === KEY_TYPE_OF[alg as ClientSigningAlg] && (k.alg === undefined || k.alg === alg))) {
      throw new RegistrationError(`token_endpoint_auth_signing_alg ${alg} matches none of the keys in jwks`);
    }
    return { jwks: { keys: keySet } };
  }
  // printable ASCII first: the URI is stored and shown to operators as sent
  const problem = uriTextProblem(b.jwks_uri, 'jwks_uri') ?? jwksUriProblem(b.jwks_uri, policy);
  if (problem) throw new RegistrationError(problem);
  return { jwksUri: b.jwks_uri as string };
}

/** `requested` (scope or audiences) may narrow what the token grants, never widen it. */
function within(field: 'scope' | 'audiences', requested: string[] | undefined, granted: string[]): string[] {
  if (requested === undefined) return granted;
  const extra = requested.filter((v) => !granted.includes(v));
  if (extra.length) {
    throw new RegistrationError(`${field} ${extra.map((v) => JSON.stringify(v)).join(', ')} ${extra.length === 1 ? 'is' : 'are'} not granted by your initial access token (it grants: ${granted.join(' ') || 'none'})`);
  }
  return [...new Set(requested)];
}

function scopeList(b: Record<string, unknown>): string[] | undefined {
  if (b.scope === undefined) return undefined;
  if (typeof b.scope !== 'string') throw new RegistrationError('scope must be a space-delimited string');
  return b.scope.split(' ').filter(Boolean);
}

function audienceList(b: Record<string, unknown>): string[] | undefined {
  if (b.audiences === undefined) return undefined;
  if (!Array.isArray(b.audiences) || b.audiences.some((a) => typeof a !== 'string')) throw new RegistrationError('audiences must be a list of URIs');
  return b.audiences as string[];
}

/** RFC 7591 §2 metadata of a new registration, under what the initial access token grants. */
export function parseRegistration(body: unknown, grant: RegistrationGrant, policy: UriPolicy): RegisteredMetadata {
  const b = asObject(body);
  refuseSecrets(b);
  authMethod(b);
  const alg = signingAlg(b);
  noRedirects(b);
  const grants = grantTypes(b);
  dpop(b);
  const name = clientName(b, DEFAULT_CLIENT_NAME);
  const k = keys(b, policy, alg);
  return {
    name,
    grantTypes: grants,
    scope: within('scope', scopeList(b), grant.scope),
    audiences: within('audiences', audienceList(b), grant.audiences),
    ...k,
  };
}

/** The scope and audiences an initial access token may grant: the same rules as an admin-created client's. */
export function parseGrant(scope: unknown, audiences: unknown, issuer: string): RegistrationGrant {
  try {
    // parseNewClient holds the rules (scope syntax, no admin scope, no Sigil audience); the rest is a placeholder
    const parsed = parseNewClient({ name: 'initial access token', jwks_uri: 'https://placeholder.invalid/jwks', scope: scope ?? '', audiences: audiences ?? [] }, issuer);
    return { scope: parsed.scope, audiences: parsed.audiences };
  } catch (err) {
    if (err instanceof ClientInputError) throw new RegistrationError(err.message);
    throw err;
  }
}

/** The client a registration creates: the token's grant, DPoP required, nothing more. */
export function newRegisteredClient(meta: RegisteredMetadata): NewClient {
  return {
    clientId: randomBytes(16).toString('hex'),
    name: meta.name,
    scope: meta.scope,
    audiences: meta.audiences,
    serves: [],
    grantTypes: meta.grantTypes,
    dpopRequired: true,
    canIntrospect: false,
    isAdmin: false,
    jwks: meta.jwks,
    jwksUri: meta.jwksUri,
    tokenBinding: 'dpop',
  };
}

export const registrationClientUri = (issuer: string, clientId: string) => `${issuer}/register/${encodeURIComponent(clientId)}`;

/** The client's metadata as registration answers it (RFC 7591 §3.2.1, RFC 7592 §3). */
export function registrationView(c: ClientRecord, issuer: string, registrationAccessToken?: string) {
  return {
    client_id: c.clientId,
    client_id_issued_at: Math.floor(c.createdAt.getTime() / 1000),
    ...(registrationAccessToken ? { registration_access_token: registrationAccessToken } : {}),
    registration_client_uri: registrationClientUri(issuer, c.clientId),
    client_name: c.name,
    token_endpoint_auth_method: 'private_key_jwt',
    grant_types: c.grantTypes,
    response_types: [] as string[],
    redirect_uris: [] as string[],
    scope: c.scope.join(' '),
    audiences: c.audiences,
    dpop_bound_access_tokens: c.dpopRequired,
    ...(c.jwksUri ? { jwks_uri: c.jwksUri } : { jwks: c.jwks }),
  };
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && new Set([...a, ...b]).size === new Set(a).size;

/**
 * RFC 7592 §2.2 update: only the keys (jwks or jwks_uri) may change. Every other field must be left
 * out or repeat its current value; scope and audiences come from the initial access token.
 */
export function parseKeyUpdate(body: unknown, current: ClientRecord, policy: UriPolicy): { jwks?: { keys: JWK[] }; jwksUri?: string } {
  const b = Object.fromEntries(Object.entries(asObject(body)).filter(([k]) => !IGNORED_ON_UPDATE.has(k)));
  if (b.client_id !== undefined && b.client_id !== current.clientId) throw new RegistrationError('client_id does not match the registration being updated');
  refuseSecrets(b);
  authMethod(b);
  const alg = signingAlg(b);
  noRedirects(b);
  dpop(b);
  const unchanged = (field: string, same: boolean) => {
    if (!same) throw new RegistrationError(`${field} cannot be changed here: registration management updates only the keys (jwks or jwks_uri); send the current value or leave it out`);
  };
  if (b.client_name !== undefined) unchanged('client_name', clientName(b, current.name) === current.name);
  if (b.grant_types !== undefined) unchanged('grant_types', sameSet(grantTypes(b), current.grantTypes));
  const scope = scopeList(b);
  if (scope !== undefined && !sameSet([...new Set(scope)], current.scope)) {
    throw new RegistrationError('scope cannot be changed: it comes from the initial access token; ask the operator for a new one');
  }
  const audiences = audienceList(b);
  if (audiences !== undefined && !sameSet([...new Set(audiences)], current.audiences)) {
    throw new RegistrationError('audiences cannot be changed: they come from the initial access token; ask the operator for a new one');
  }
  return keys(b, policy, alg);
}
