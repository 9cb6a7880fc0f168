// A JWT-SVID as a client assertion (client_assertion_type jwt-spiffe, draft-ietf-oauth-spiffe-client-auth
// §3.1, and the SPIFFE JWT-SVID spec): signed by a jwt-svid key of the bundle of the trust domain its
// `sub` names, `aud` Sigil's issuer alone, `exp` required and near, matched to exactly one client.
//
// Decisions:
// - `aud` is the issuer only, whatever ASSERTION_AUD_TOKEN_ENDPOINT says: that switch exists for older
//   private_key_jwt clients; SVIDs are minted on request for an audience (`spire-agent api fetch jwt
//   -audience <issuer>`), so no SVID client needs it, and an SVID made for the token endpoint URL (or
//   for several audiences) may have been made for another server (audience injection).
// - `jti` is neither required nor one-time: an SVID is reused until it expires. What limits a copied one
//   is SVID_MAX_LIFETIME (exp at most that far ahead) and DPoP (every token is bound to a key the copier
//   does not hold, and every proof's jti is one-time). See the README, "What a copied SVID is worth".
// - `client_id` is optional (-01 and SPIRE tooling send none; a later draft makes it required): when
//   sent it must name the client the SVID matched, or be the SVID's SPIFFE ID itself.
import type { JWK } from 'jose';
import type { ClientRecord } from '../clients/client-store.js';
import type { ClientSigningAlg } from '../keys/algorithms.js';
import {
  algorithmProblem, audienceProblem, candidateKeys, CLOCK_SKEW_SECONDS, decodeUnverified, refused, shown, signatureVerifies, timeProblem, unavailable,
  type WorkloadAuthOutcome,
} from './assertion-checks.js';
import { parseSpiffeId, parseSpiffePattern, spiffeIdMatches, type SpiffeId } from './spiffe-id.js';
import type { WorkloadClientIndex, WorkloadTrust } from './types.js';

export interface JwtSvidDeps {
  /** Sigil's issuer identifier: the one accepted aud */
  issuer: string;
  trust: Pick<WorkloadTrust, 'jwtAuthorities'>;
  clients: Pick<WorkloadClientIndex, 'bySpiffeId'>;
  /** SVID_MAX_LIFETIME */
  maxLifetimeSeconds: number;
  /** seconds since the epoch (injected in tests) */
  now?: () => number;
}

const WHAT = 'the JWT-SVID';

/**
 * SPIFFE JWT-SVID §2.3 allows typ "JWT" or "JOSE" (or none); any other type (dpop+jwt, at+jwt, a
 * client-authentication+jwt made for private_key_jwt...) is another kind of JWT (RFC 8725 §3.11).
 */
export function svidTypeProblem(typ: unknown): string | undefined {
  if (typ === undefined) return undefined;
  if (typeof typ === 'string') {
    const type = typ.toLowerCase().replace(/^application\//, '');
    if (type === 'jwt' || type === 'jose') return undefined;
  }
  return `a JWT of type ${shown(typ, 40)} is not a JWT-SVID (typ must be absent, "JWT" or "JOSE")`;
}

/** The verdict for a jwt-spiffe client assertion, or why not. Throws nothing: a store that fails is `unavailable`. */
export async function verifyJwtSvid(assertion: string, requestedClientId: string | undefined, deps: JwtSvidDeps): Promise<WorkloadAuthOutcome> {
  const now = (deps.now ?? (() => Math.floor(Date.now() / 1000)))();
  const jwt = decodeUnverified(assertion);
  if (!jwt) return refused('the client assertion is not a signed JWT');
  const { header, payload } = jwt;
  const shape = algorithmProblem(header.alg, WHAT) ?? svidTypeProblem(header.typ)
    ?? (typeof header.kid === 'string' && header.kid !== '' ? undefined : `${WHAT} must name its signing key (kid)`);
  if (shape) return refused(shape);
  if (header.crit !== undefined) return refused(`${WHAT} must not have critical header parameters`);

  const id = parseSpiffeId(payload.sub);
  if (!id.ok) return refused(`${WHAT} sub is not a SPIFFE ID: ${id.problem}`);
  const claims = audienceProblem(payload.aud, [deps.issuer], WHAT) ?? timeProblem(payload, now, WHAT)
    ?? ((payload.exp as number) - now > deps.maxLifetimeSeconds + CLOCK_SKEW_SECONDS
      ? `${WHAT} must expire within ${deps.maxLifetimeSeconds} seconds (SVID_MAX_LIFETIME)` : undefined);
  if (claims) return refused(claims);

  let authorities: Awaited<ReturnType<JwtSvidDeps['trust']['jwtAuthorities']>>;
  try {
    authorities = await deps.trust.jwtAuthorities(id.value.trustDomain);
  } catch {
    return unavailable(`the bundle of trust domain ${shown(id.value.trustDomain)} cannot be read now`);
  }
  // not configured, or its bundle is past its staleness bound: the sentence says which
  if (!authorities.ok) return refused(authorities.problem);
  const alg = header.alg as ClientSigningAlg;
  const keys: JWK[] = candidateKeys(authorities.value, alg, header.kid, ['jwt-svid']);
  if (keys.length === 0) return refused(`${WHAT} kid ${shown(header.kid, 80)} names no ${alg} key of the bundle of trust domain ${shown(id.value.trustDomain)}`);
  if (!(await signatureVerifies(assertion, keys, alg))) return refused(`${WHAT} signature does not verify with the trust domain's key ${shown(header.kid, 80)}`);

  let matched: ClientRecord[];
  try {
    matched = onlyMatching(await deps.clients.bySpiffeId(id.value), id.value);
  } catch {
    return unavailable('the clients cannot be read now');
  }
  if (matched.length === 0) return refused(`no active client is bound to SPIFFE ID ${shown(id.value.id, 300)}`);
  if (matched.length > 1) return refused(`several clients are bound to SPIFFE ID ${shown(id.value.id, 300)}; an administrator must make the bindings unambiguous`);
  const [client] = matched as [ClientRecord];
  if (requestedClientId !== undefined && requestedClientId !== client.clientId && requestedClientId !== id.value.id) {
    return refused(`client_id ${shown(requestedClientId, 80)} is not the client SPIFFE ID ${shown(id.value.id, 300)} is bound to`);
  }
  return { ok: true, client, verdict: { clientId: client.clientId, method: 'spiffe_jwt', identity: id.value.id } };
}

/**
 * The index's answer, checked again here: active, bound to a SPIFFE pattern, and that pattern matching
 * the ID (exact, or a `/*` path-segment prefix). The index is another module's; a client it returns in
 * error must still not authenticate.
 */
function onlyMatching(clients: readonly ClientRecord[], id: SpiffeId): ClientRecord[] {
  return clients.filter((c) => {
    if (c.status !== 'active' || c.workload?.kind !== 'spiffe') return false;
    const pattern = parseSpiffePattern(c.workload.spiffeId);
    return pattern.ok && spiffeIdMatches(pattern.value, id);
  });
}
