// A JWT from a configured federation (a Kubernetes service-account issuer, GitHub Actions, GitLab CI, a
// cloud workload-identity issuer) as an RFC 7523 jwt-bearer client assertion: told apart from a
// private_key_jwt assertion by its `iss`, which is a configured federation (a Sigil client id never is).
// Checked: a key of the federation (its JWKS, fetched by trust-fetch), Sigil's algorithms, `aud` one
// value (Sigil's issuer or the federation's configured audience; Kubernetes projected tokens carry a
// one-element array), `exp` required, the lifetime within the federation's maximum, `sub` and the
// client's required claims matching exactly one client.
//
// No jti replay check: a Kubernetes projected token (and a CI job's token) is reused until it is
// refreshed. What limits a copied one is its short, bounded lifetime and DPoP (see jwt-svid.ts).
import type { ClientRecord } from '../clients/client-store.js';
import { assertionTypeProblem } from '../clients/client-assertion.js';
import type { ClientSigningAlg } from '../keys/algorithms.js';
import {
  algorithmProblem, audienceProblem, candidateKeys, CLOCK_SKEW_SECONDS, decodeUnverified, refused, shown, signatureVerifies, timeProblem, unavailable,
  type WorkloadAuthOutcome,
} from './assertion-checks.js';
import type { Federation, WorkloadClientIndex, WorkloadTrust } from './types.js';

export interface FederatedJwtDeps {
  /** Sigil's issuer identifier: an accepted aud for every federation */
  issuer: string;
  trust: Pick<WorkloadTrust, 'federationKeys'>;
  clients: Pick<WorkloadClientIndex, 'byFederatedSubject'>;
  /** seconds since the epoch (injected in tests) */
  now?: () => number;
}

const WHAT = 'the federated JWT';

/** The `iss` of a jwt-bearer assertion, read unverified: only to ask whether it names a federation. */
export function unverifiedIssuer(assertion: string): string | undefined {
  const jwt = decodeUnverified(assertion);
  const iss = jwt?.payload.iss;
  return typeof iss === 'string' && iss !== '' ? iss : undefined;
}

/** The verdict for a jwt-bearer assertion whose iss is `federation`, or why not. Throws nothing. */
export async function verifyFederatedJwt(
  assertion: string, federation: Federation, requestedClientId: string | undefined, deps: FederatedJwtDeps,
): Promise<WorkloadAuthOutcome> {
  const now = (deps.now ?? (() => Math.floor(Date.now() / 1000)))();
  const jwt = decodeUnverified(assertion);
  if (!jwt) return refused('the client assertion is not a signed JWT');
  const { header, payload } = jwt;
  if (payload.iss !== federation.issuer) return refused(`${WHAT} iss is not ${shown(federation.issuer)}`);
  const shape = algorithmProblem(header.alg, WHAT) ?? assertionTypeProblem(header.typ)
    ?? (header.kid === undefined || (typeof header.kid === 'string' && header.kid !== '') ? undefined : `${WHAT} kid must be a non-empty string`);
  if (shape) return refused(shape);
  if (header.crit !== undefined) return refused(`${WHAT} must not have critical header parameters`);

  const accepted = federation.audience === undefined ? [deps.issuer] : [deps.issuer, federation.audience];
  const claims = audienceProblem(payload.aud, accepted, WHAT) ?? timeProblem(payload, now, WHAT) ?? lifetimeProblem(payload.exp as number, payload.iat, now, federation);
  if (claims) return refused(claims);
  const { sub } = payload;
  if (typeof sub !== 'string' || sub === '') return refused(`${WHAT} must have a sub`);

  let keys: Awaited<ReturnType<FederatedJwtDeps['trust']['federationKeys']>>;
  try {
    keys = await deps.trust.federationKeys(federation.issuer, header.kid);
  } catch {
    return unavailable(`the keys of issuer ${shown(federation.issuer)} cannot be read now`);
  }
  if (!keys.ok) return refused(keys.problem);
  const alg = header.alg as ClientSigningAlg;
  const candidates = candidateKeys(keys.value, alg, header.kid, ['sig']);
  if (candidates.length === 0) return refused(`${WHAT} names no current ${alg} key of issuer ${shown(federation.issuer)}${header.kid === undefined ? '' : ` (kid ${shown(header.kid, 80)})`}`);
  if (!(await signatureVerifies(assertion, candidates, alg))) return refused(`${WHAT} signature does not verify with a key of issuer ${shown(federation.issuer)}`);

  let bound: readonly ClientRecord[];
  try {
    bound = await deps.clients.byFederatedSubject(federation.issuer, sub);
  } catch {
    return unavailable('the clients cannot be read now');
  }
  const candidatesForSub = bound.filter((c) => c.status === 'active' && c.workload?.kind === 'federated'
    && c.workload.issuer === federation.issuer && c.workload.subject === sub);
  const who = `issuer ${shown(federation.issuer)} subject ${shown(sub, 200)}`;
  if (candidatesForSub.length === 0) return refused(`no active client is bound to ${who}`);
  const matched = candidatesForSub.filter((c) => claimsProblem(c, payload) === undefined);
  if (matched.length === 0) {
    // one client for the subject: say which claim; several: say none of them matched
    return refused(candidatesForSub.length === 1 ? claimsProblem(candidatesForSub[0] as ClientRecord, payload) as string : `${WHAT} matches the required claims of no client bound to ${who}`);
  }
  if (matched.length > 1) return refused(`several clients are bound to ${who}; an administrator must make the bindings unambiguous`);
  const [client] = matched as [ClientRecord];
  if (requestedClientId !== undefined && requestedClientId !== client.clientId) {
    return refused(`client_id ${shown(requestedClientId, 80)} is not the client ${who} is bound to`);
  }
  return { ok: true, client, verdict: { clientId: client.clientId, method: 'federated_jwt', identity: `${federation.issuer} ${sub}` } };
}

/** exp - iat (or exp - now without iat) within the federation's maximum. */
function lifetimeProblem(exp: number, iat: unknown, now: number, federation: Federation): string | undefined {
  const lifetime = typeof iat === 'number' ? exp - iat : exp - now;
  const max = federation.maxLifetimeSeconds;
  const slack = typeof iat === 'number' ? 0 : CLOCK_SKEW_SECONDS;
  return lifetime > max + slack ? `${WHAT} lives ${lifetime} seconds, longer than the ${max} seconds its issuer is trusted for` : undefined;
}

/** Each required claim present and equal to its string (a missing claim refuses; no type coercion). */
function claimsProblem(client: ClientRecord, payload: Record<string, unknown>): string | undefined {
  if (client.workload?.kind !== 'federated') return 'not a federated client';
  for (const [name, expected] of Object.entries(client.workload.claims ?? {})) {
    if (!Object.hasOwn(payload, name)) return `${WHAT} lacks the required claim ${shown(name, 60)}`;
    if (payload[name] !== expected) return `${WHAT} claim ${shown(name, 60)} is not the required value`;
  }
  return undefined;
}
