// What the admin may configure as trust (SPIFFE trust domains, federated JWT issuers), checked once
// before it is stored. Every URL Sigil will fetch from is checked with the same destination rules as a
// client's jwks_uri (src/outbound/destination.ts; JWKS_URI_ALLOWED_HOSTS, JWKS_URI_ALLOW_HTTP_LOOPBACK),
// since an admin typo must not aim Sigil's fetcher at an internal address either.
import { destinationUrlProblem, type DestinationPolicy } from '../outbound/destination.js';
import { printableTextProblem, uriTextProblem } from '../input/printable-text.js';
import { trustDomainProblem } from './spiffe-id.js';

/** Input the admin API refuses with 400 invalid_request; the message says what to fix. */
export class TrustInputError extends Error {
  override name = 'TrustInputError';
}

/** `--max-lifetime`: the longest lifetime (exp - iat) of a federated JWT accepted, in seconds. */
export const DEFAULT_MAX_LIFETIME_SECONDS = 3600;
export const MIN_MAX_LIFETIME_SECONDS = 60;
export const MAX_MAX_LIFETIME_SECONDS = 86_400;
/** an audience is compared with a JWT's aud, shown in terminals: printable, bounded */
export const MAX_AUDIENCE_LENGTH = 2000;

export interface NewTrustDomain {
  name: string;
  bundleEndpoint: string;
}

export interface NewFederation {
  issuer: string;
  jwksUri?: string;
  audience?: string;
  maxLifetimeSeconds: number;
}

function objectBody(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new TrustInputError('the request body must be a JSON object');
  return body as Record<string, unknown>;
}

/** Unknown members are refused rather than ignored: a misspelt `jwks_url` must not silently mean "use discovery". */
function onlyKnown(b: Record<string, unknown>, known: readonly string[]): void {
  const unknown = Object.keys(b).filter((k) => !known.includes(k));
  if (unknown.length) throw new TrustInputError(`unknown member${unknown.length > 1 ? 's' : ''} ${unknown.slice(0, 5).map((k) => JSON.stringify(k.slice(0, 40))).join(', ')}; expected ${known.join(', ')}`);
}

/** A URL Sigil fetches from: https (or loopback http in development), no credentials, no internal address unless allowed. */
export function fetchUrlProblem(value: unknown, field: string, content: string, policy: DestinationPolicy): string | undefined {
  if (typeof value === 'string') {
    const text = uriTextProblem(value, field);
    if (text) return text;
  }
  return destinationUrlProblem(value, policy, { field, content });
}

export function parseTrustDomainName(value: unknown): string {
  const problem = trustDomainProblem(value);
  if (problem) throw new TrustInputError(`name: ${problem}`);
  // "." and ".." pass the character rules but name no host
  if (/^\.+$/.test(value as string)) throw new TrustInputError('name: a trust domain is a host name such as example.org');
  return value as string;
}

export function parseNewTrustDomain(body: unknown, policy: DestinationPolicy): NewTrustDomain {
  const b = objectBody(body);
  onlyKnown(b, ['name', 'bundle_endpoint']);
  const name = parseTrustDomainName(b.name);
  const problem = fetchUrlProblem(b.bundle_endpoint, 'bundle_endpoint', 'SPIFFE bundles', policy);
  if (problem) throw new TrustInputError(problem);
  return { name, bundleEndpoint: b.bundle_endpoint as string };
}

/**
 * A federation's issuer is compared with its JWTs' `iss` byte for byte and is where OIDC discovery
 * starts: an https URL without query or fragment (OpenID Connect Discovery §2, RFC 8414 §2).
 */
export function parseFederationIssuer(value: unknown, policy: DestinationPolicy): string {
  const problem = fetchUrlProblem(value, 'issuer', 'OIDC discovery and keys', policy);
  if (problem) throw new TrustInputError(problem);
  if (new URL(value as string).search || (value as string).includes('?')) throw new TrustInputError('issuer must not have a query (?...)');
  return value as string;
}

export function parseNewFederation(body: unknown, policy: DestinationPolicy): NewFederation {
  const b = objectBody(body);
  onlyKnown(b, ['issuer', 'jwks_uri', 'audience', 'max_lifetime_seconds']);
  const issuer = parseFederationIssuer(b.issuer, policy);
  let jwksUri: string | undefined;
  if (b.jwks_uri !== undefined && b.jwks_uri !== null) {
    const problem = fetchUrlProblem(b.jwks_uri, 'jwks_uri', 'keys', policy);
    if (problem) throw new TrustInputError(problem);
    jwksUri = b.jwks_uri as string;
  }
  let audience: string | undefined;
  if (b.audience !== undefined && b.audience !== null) {
    const problem = printableTextProblem(b.audience, 'audience', MAX_AUDIENCE_LENGTH);
    if (problem) throw new TrustInputError(problem);
    // compared with aud exactly: surrounding spaces would make it unmatchable, so they are refused, not trimmed
    if ((b.audience as string).trim() !== b.audience) throw new TrustInputError('audience must not start or end with spaces');
    audience = b.audience as string;
  }
  const raw = b.max_lifetime_seconds ?? DEFAULT_MAX_LIFETIME_SECONDS;
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < MIN_MAX_LIFETIME_SECONDS || raw > MAX_MAX_LIFETIME_SECONDS) {
    throw new TrustInputError(`max_lifetime_seconds must be a whole number of seconds from ${MIN_MAX_LIFETIME_SECONDS} to ${MAX_MAX_LIFETIME_SECONDS} (default ${DEFAULT_MAX_LIFETIME_SECONDS})`);
  }
  return { issuer, jwksUri, audience, maxLifetimeSeconds: raw };
}

/** The body of a remove request: `{ "name": ... }` or `{ "issuer": ... }` (an issuer is a URL, so not a path segment). */
export function removalKey(body: unknown, member: 'name' | 'issuer'): string {
  const b = objectBody(body);
  onlyKnown(b, [member]);
  const value = b[member];
  if (typeof value !== 'string' || value === '' || value.length > 2000) throw new TrustInputError(`${member} must be a non-empty string of at most 2000 characters`);
  return value;
}
