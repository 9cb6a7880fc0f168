// What Sigil requires of a client assertion (RFC 7523 private_key_jwt) beyond oidc-provider's own
// checks, which accept any aud list containing the issuer, the token endpoint or the endpoint called.
// draft-ietf-oauth-rfc7523bis closes the audience-injection attack class: the assertion's aud is the
// issuer identifier as its sole value. Checked at every endpoint that authenticates clients.
import type { JWK } from 'jose';
import { jwksProblems } from './client-keys.js';

/** rfc7523bis's explicit type for client authentication JWTs */
export const CLIENT_AUTHENTICATION_TYP = 'client-authentication+jwt';

/** The aud values accepted: the issuer; the token endpoint URL too when ASSERTION_AUD_TOKEN_ENDPOINT=true. */
export function acceptedAssertionAudiences(issuer: string, tokenEndpointToo: boolean): ReadonlySet<string> {
  return new Set(tokenEndpointToo ? [issuer, `${issuer}/token`] : [issuer]);
}

/**
 * The sole audience value must be accepted. A one-element array holds a sole value: the draft says so
 * since -03 ("Do not restrict the aud claim's type. Allow it to be an array with a single member").
 */
export function assertionAudienceProblem(aud: unknown, accepted: ReadonlySet<string>): string | undefined {
  const values: unknown[] = Array.isArray(aud) ? aud : [aud];
  const what = accepted.size > 1 ? 'the issuer identifier (or the token endpoint URL)' : 'the issuer identifier';
  if (values.length !== 1) return `client assertion aud must be a single value: ${what}`;
  const [only] = values;
  if (typeof only !== 'string' || !accepted.has(only)) return `client assertion aud must be ${what}`;
  return undefined;
}

/**
 * An explicitly typed JWT of another kind (a DPoP proof, an access token, a status list token...) is
 * no client assertion (RFC 8725 §3.11): typ must be absent, "JWT" or client-authentication+jwt.
 * Media types compare case-insensitively, with or without "application/" (RFC 7515 §4.1.9).
 */
export function assertionTypeProblem(typ: unknown): string | undefined {
  if (typ === undefined) return undefined;
  if (typeof typ === 'string') {
    const type = typ.toLowerCase().replace(/^application\//, '');
    if (type === 'jwt' || type === CLIENT_AUTHENTICATION_TYP) return undefined;
  }
  const shown = JSON.stringify(typ) ?? String(typ);
  return `a JWT of type ${shown.length > 40 ? `${shown.slice(0, 37)}...` : shown} is not a client assertion (typ must be absent, "JWT" or "${CLIENT_AUTHENTICATION_TYP}")`;
}

/** per registered key set (a client's cached metadata): what jwksProblems said of it */
const checkedKeySets = new WeakMap<object, string | undefined>();

/**
 * The key rules hold at use too: a key stored before they did (e.g. RSA e = 1, for which anyone can
 * make a valid signature) must authenticate no one. Which key verified is not known here, so one
 * bad key refuses the client until its keys are replaced.
 */
export function registeredKeysProblem(jwks: { keys: JWK[] } | undefined): string | undefined {
  if (!jwks || typeof jwks !== 'object') return undefined;
  if (checkedKeySets.has(jwks)) return checkedKeySets.get(jwks);
  const problems = jwksProblems(jwks);
  const problem = problems.length ? `the client's registered keys are not acceptable (${problems.join('; ')}); they must be replaced` : undefined;
  checkedKeySets.set(jwks, problem);
  return problem;
}
