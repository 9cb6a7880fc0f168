// What a JWT-SVID and a federated JWT share when they stand in for a client's own assertion: the
// outcome shape, the algorithm allow-list, the audience rule (draft-ietf-oauth-rfc7523bis: one value),
// the clock checks, and signature verification with a key Sigil found for the JWT (never one the JWT
// brings along). Signature checks are jose's.
import { compactVerify, decodeJwt, decodeProtectedHeader, importJWK, type JWK, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import type { ClientRecord } from '../clients/client-store.js';
import { CLIENT_SIGNING_ALGS, KEY_TYPE_OF, PRIVATE_MEMBERS, type ClientSigningAlg } from '../keys/algorithms.js';
import type { WorkloadVerdict } from './types.js';

/** the clock skew tolerated everywhere else in Sigil (clockTolerance, DPoP proofs) */
export const CLOCK_SKEW_SECONDS = 5;

/**
 * The answer of a workload authenticator. `unavailable`: the trust configuration or the client index
 * could not be read (503, fail closed); `refused`: 401 invalid_client with `problem` as its reason,
 * which names no credential (a SPIFFE ID or a subject is an identity, not a secret).
 */
export type WorkloadAuthOutcome =
  | { ok: true; client: ClientRecord; verdict: WorkloadVerdict }
  | { ok: false; kind: 'refused'; problem: string }
  | { ok: false; kind: 'unavailable'; problem: string };

export const refused = (problem: string): WorkloadAuthOutcome => ({ ok: false, kind: 'refused', problem });
export const unavailable = (problem: string): WorkloadAuthOutcome => ({ ok: false, kind: 'unavailable', problem });

/** A value shown in a reason: JSON, clipped, so nothing a caller sends can fill a log line. */
export function shown(value: unknown, max = 120): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

export interface DecodedJwt {
  header: ProtectedHeaderParameters;
  payload: JWTPayload;
}

/** The header and claims, unverified; undefined when it is not a JWS in compact form. */
export function decodeUnverified(jwt: string): DecodedJwt | undefined {
  try {
    return { header: decodeProtectedHeader(jwt), payload: decodeJwt(jwt) };
  } catch {
    return undefined;
  }
}

const ALLOWED_ALGS: ReadonlySet<string> = new Set(CLIENT_SIGNING_ALGS);

/** Sigil's client algorithms only: never none, never HS* (a public key used as an HMAC secret). */
export function algorithmProblem(alg: unknown, what: string): string | undefined {
  if (typeof alg === 'string' && ALLOWED_ALGS.has(alg)) return undefined;
  return `${what} alg ${shown(alg, 40)} is not accepted (one of ${CLIENT_SIGNING_ALGS.join(', ')})`;
}

/**
 * aud holds exactly one value, and it is one of `accepted` (a one-element array is one value,
 * rfc7523bis -03). Several values, even with an accepted one among them, are refused: an assertion
 * made for several recipients can be replayed by any of them.
 */
export function audienceProblem(aud: unknown, accepted: readonly string[], what: string): string | undefined {
  const values: unknown[] = Array.isArray(aud) ? aud : [aud];
  const expected = accepted.map((a) => JSON.stringify(a)).join(' or ');
  if (values.length !== 1) return `${what} aud must be a single value: ${expected}`;
  if (typeof values[0] !== 'string' || !accepted.includes(values[0])) return `${what} aud must be ${expected}`;
  return undefined;
}

/** exp present and not past; nbf and iat, when present, numbers not in the future. */
export function timeProblem(payload: JWTPayload, now: number, what: string): string | undefined {
  const { exp, nbf, iat } = payload;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return `${what} must have an exp`;
  if (exp <= now - CLOCK_SKEW_SECONDS) return `${what} has expired`;
  if (nbf !== undefined && (typeof nbf !== 'number' || !Number.isFinite(nbf) || nbf > now + CLOCK_SKEW_SECONDS)) return `${what} is not yet valid (nbf)`;
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat) || iat > now + CLOCK_SKEW_SECONDS)) return `${what} iat is in the future`;
  return undefined;
}

/** The keys among `keys` that can check a JWS of this alg and kid: a matching key type and, when they say so, alg and use. */
export function candidateKeys(keys: readonly JWK[], alg: ClientSigningAlg, kid: string | undefined, uses: readonly string[]): JWK[] {
  return keys.filter((k) => (kid === undefined || k.kid === kid)
    && k.kty === KEY_TYPE_OF[alg]
    && (k.alg === undefined || k.alg === alg)
    && (k.use === undefined || uses.includes(k.use))
    // a key with private members in a trust source is a misconfiguration; never use it as given
    && !PRIVATE_MEMBERS.some((m) => m in k));
}

/**
 * Whether one of `keys` verifies the signature of `jwt` with `alg`. jose is told the one algorithm the
 * header names (already on the allow-list); only the signature is its business (compactVerify): the
 * claims are Sigil's checks, made with Sigil's (injectable) clock.
 */
export async function signatureVerifies(jwt: string, keys: readonly JWK[], alg: ClientSigningAlg): Promise<boolean> {
  for (const jwk of keys) {
    try {
      const key = await importJWK({ ...jwk, alg }, alg);
      await compactVerify(jwt, key, { algorithms: [alg] });
      return true;
    } catch {
      // next key
    }
  }
  return false;
}
