// The one-time claims of a token request: its client assertion's jti and its DPoP proof's.
//
// oidc-provider asks about the assertion during client authentication (ReplayDetection.find, see
// adapter.ts); that question starts the claim, and the proof's jti is claimed in the same round trip.
// The answer goes the other way round: the grant is handed `confirm()` (token-endpoint.ts) and
// calls it before it issues anything. For client_credentials the assertion's answer is held until
// then, so the Redis round trip runs while the grant checks the proof and decides; for the other
// grants oidc-provider is answered at once, as it would be without Sigil.
import { createHash } from 'node:crypto';
import type { ClaimVerdict, ReplayClaim, ReplayGuard } from '../storage/replay-guard.js';
import { InvalidClientAuth, InvalidDpopProof, type OAuthError } from './refusals.js';

/** ttl of a claim; the adapter's upsert() extends it when oidc-provider asks for longer */
export const REPLAY_CLAIM_TTL = 600;

/**
 * The key a DPoP proof's jti is claimed under: sha256(client_id + jti), base64url. It is the id
 * oidc-provider's ReplayDetection.unique() would use (pinned by the contract test), so instances of
 * earlier Sigil versions, which claimed proofs through oidc-provider, agree on it.
 */
export function proofReplayId(clientId: string, jti: string): string {
  return createHash('sha256').update(`${clientId}${jti}`).digest('base64url');
}

/** The request as the claims read it (oidc-provider's ctx is one). */
export interface ClaimingRequest {
  get(header: string): string;
  oidc?: { route?: string; params?: Record<string, unknown>; client?: { clientId: string; grantTypeAllowed?(type: string): boolean } };
}

/** which claim of a token request: its client assertion's jti or its DPoP proof's */
export type ClaimKind = 'assertion' | 'proof';

/** A verified proof, as far as its claim goes. */
export interface ProofToClaim {
  jti: string;
  /** epoch seconds */
  iat: number;
}

/** The refusal of a JWT that predates a loss of replay records: it may have been used before. */
export function predatesLoss(kind: ClaimKind): OAuthError {
  return kind === 'assertion'
    ? new InvalidClientAuth('client assertion was issued before the server lost its replay records (or has no iat); make a new one')
    : new InvalidDpopProof('DPoP proof was issued before the server lost its replay records; make a new one');
}

/** A replay, or a JWT that predates a loss: the refusal; undefined when the claim was free. */
export function refusalOf(verdict: ClaimVerdict | undefined, kind: ClaimKind): OAuthError | undefined {
  if (verdict === 'free') return undefined;
  if (verdict === 'predates-loss') return predatesLoss(kind);
  return kind === 'assertion'
    ? new InvalidClientAuth('client assertion tokens must only be used once')
    : new InvalidDpopProof('DPoP proof JWT Replay detected');
}

/** the payload of a compact JWT, not verified (undefined when it is not one) */
function jwtPayload(jwt: unknown): Record<string, unknown> | undefined {
  const payload = typeof jwt === 'string' ? jwt.split('.')[1] : undefined;
  if (!payload) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const iatOf = (payload: Record<string, unknown> | undefined): number | undefined => (typeof payload?.iat === 'number' ? payload.iat : undefined);

/** What one request claimed in its round trip. */
interface RequestClaims {
  clientId: string;
  /** the proof's jti claimed alongside the assertion (read before the proof is verified), if any */
  proofJti: string | undefined;
  /** [assertion, proof]: the proof's only when it was claimed alongside */
  verdicts: Promise<readonly ClaimVerdict[]>;
  /** oidc-provider was told "not seen": the assertion's answer is still to be given (confirm or settle) */
  held: boolean;
}

export class ReplayClaims {
  readonly #requests = new WeakMap<object, RequestClaims>();

  /** `holds`: the requests whose assertion answer waits for the grant's confirm() */
  constructor(private readonly guard: ReplayGuard, readonly holds: (req: ClaimingRequest) => boolean) {}

  /**
   * oidc-provider's question about a client assertion (ReplayDetection.find during client
   * authentication, after the assertion verified): was `id` seen? Claims it, with the request's DPoP
   * proof in the same round trip. Resolves false at once for a held request: its answer is confirm()'s.
   *
   * The proof is read here unverified. That is safe: it is claimed only together with the client's
   * own verified assertion, so a forged one burns at most that client's own jti, and confirm() uses
   * its answer only for the proof the grant verified (same jti).
   */
  assertion(req: ClaimingRequest | undefined, id: string): false | Promise<boolean> {
    const clientId = req?.oidc?.client?.clientId;
    // no request, no client, or a second question from one request: nothing to pair, asked as it comes
    if (!req || clientId === undefined || this.#requests.has(req)) return this.#seen(clientId ?? '', id, req);
    // read only when a loss makes it matter; oidc-provider verified the assertion before asking
    const assertion: ReplayClaim = { id, iat: () => iatOf(jwtPayload(req.oidc?.params?.client_assertion)) };
    const header = req.get('dpop');
    const proof = header ? jwtPayload(header) : undefined;
    const proofJti = typeof proof?.jti === 'string' && proof.jti ? proof.jti : undefined;
    const proofId = proofJti === undefined ? undefined : proofReplayId(clientId, proofJti);
    const verdicts: Promise<readonly ClaimVerdict[]> = proofId === undefined || proofId === id
      ? this.guard.claim(clientId, assertion, REPLAY_CLAIM_TTL).then((v) => [v])
      : this.guard.claimPair(clientId, assertion, { id: proofId, iat: () => iatOf(proof) }, REPLAY_CLAIM_TTL);
    // an answer nobody takes (the request failed first) must not surface as an unhandled rejection
    verdicts.catch(() => {});
    const held = this.holds(req);
    this.#requests.set(req, { clientId, proofJti: proofId === id ? undefined : proofJti, verdicts, held });
    if (held) return false;
    return verdicts.then(([verdict]) => {
      if (verdict === 'replayed') return true;
      const refusal = refusalOf(verdict, 'assertion');
      if (refusal) throw refusal;
      return false;
    });
  }

  /**
   * The grant's replay step: resolves once this request's one-time claims are answered "free", the
   * held assertion's first, then the proof's (`proof`: the one the grant verified, if any). Rejects
   * with the refusal of a replay, or StorageUnavailable (503) when the claims could not be made.
   */
  async confirm(req: object, clientId: string, proof: ProofToClaim | undefined): Promise<void> {
    const claims = this.#requests.get(req);
    this.#requests.delete(req);
    let proofVerdict: ClaimVerdict | undefined;
    if (claims && (claims.held || (proof !== undefined && claims.proofJti === proof.jti))) {
      const verdicts = await claims.verdicts;
      if (claims.held) {
        const refusal = refusalOf(verdicts[0], 'assertion');
        if (refusal) throw refusal;
      }
      if (proof !== undefined && claims.proofJti === proof.jti) proofVerdict = verdicts[1];
    }
    if (proof === undefined) return;
    proofVerdict ??= await this.guard.claim(clientId, { id: proofReplayId(clientId, proof.jti), iat: () => proof.iat }, REPLAY_CLAIM_TTL);
    const refusal = refusalOf(proofVerdict, 'proof');
    if (refusal) throw refusal;
  }

  /**
   * For a request that did not confirm (refused by oidc-provider before its grant, or by the grant
   * before its replay step): a held assertion is answered now, and a replay is the refusal it gets,
   * as if the claim had been awaited where oidc-provider made it. undefined when nothing is held.
   */
  settle(req: object): Promise<void> | undefined {
    const claims = this.#requests.get(req);
    if (!claims) return undefined;
    this.#requests.delete(req);
    if (!claims.held) return undefined;
    return claims.verdicts.then(([verdict]) => {
      const refusal = refusalOf(verdict, 'assertion');
      if (refusal) throw refusal;
    });
  }

  /** a claim made here lasts REPLAY_CLAIM_TTL; a JWT that lives longer keeps its id claimed longer */
  extend(clientId: string, id: string, ttlSeconds: number): Promise<void> {
    return this.guard.extend(clientId, id, ttlSeconds);
  }

  /** a claim made as it is asked for, answered at once (seen: true) */
  async #seen(clientId: string, id: string, req: ClaimingRequest | undefined): Promise<boolean> {
    const assertion = req?.oidc?.params?.client_assertion;
    const verdict = await this.guard.claim(clientId, { id, iat: () => iatOf(jwtPayload(assertion)) }, REPLAY_CLAIM_TTL);
    if (verdict === 'replayed') return true;
    const refusal = refusalOf(verdict, 'assertion');
    if (refusal) throw refusal;
    return false;
  }
}
