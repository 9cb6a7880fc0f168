// Steps every Sigil grant shares.
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { SigningAlg } from '../../config.js';
import { predatesLoss, type HeldClaims, type RequestLike } from '../../oidc/adapter.js';
import { DpopProofError, type DpopProofVerifier, type VerifiedProof } from '../dpop-proof.js';

export interface AccessTokenSettings {
  ttlSeconds: number;
  /** the active signing key */
  alg: SigningAlg;
  kid: string;
}

export interface IssuedToken {
  jti: string;
  clientId: string;
  /** epoch seconds */
  expiresAt: number;
  grantType: string;
  /** the token's extra claims (status list reference, act) */
  extra?: Record<string, unknown>;
}

interface Bindable {
  setThumbprint(prop: 'jkt', thumbprint: string): void;
}

/** how long a proof's jti is remembered: well past the life of any proof Sigil accepts (iat 60 s old at most) */
const PROOF_REPLAY_WINDOW_SECONDS = 300;

/** How a grant checks the request's DPoP proof. */
export interface ProofCheck {
  verifier: DpopProofVerifier;
  /** the issuer-based token endpoint URL every proof's htu must name */
  tokenEndpoint: string;
}

/**
 * The request's DPoP proof, checked (undefined when the request has none): every check but the
 * jti's, which bindToProofKey makes. Refusals are oidc-provider errors (invalid_dpop_proof, or
 * use_dpop_nonce with a DPoP-Nonce header to retry with).
 */
export function tokenRequestProof(ctx: KoaContextWithOIDC, check: ProofCheck): VerifiedProof | undefined {
  const header = ctx.req.headers.dpop;
  if (header === undefined) return undefined;
  try {
    // two DPoP headers arrive joined by a comma, which no compact JWS contains: refused as malformed
    const proof = check.verifier.verify(typeof header === 'string' ? header : '', { method: ctx.method, url: check.tokenEndpoint });
    const next = check.verifier.nextNonce();
    if (next && proof.nonce !== next) ctx.set('DPoP-Nonce', next);
    return proof;
  } catch (err) {
    if (!(err instanceof DpopProofError)) throw err;
    if (err.useNonce && err.nonce) {
      ctx.set('DPoP-Nonce', err.nonce);
      throw new errors.UseDpopNonce(err.message);
    }
    throw new errors.InvalidDpopProof(err.message);
  }
}

/** A client registered with DPoP required (the default) gets no token without a proof. */
export function requireProofIf(required: boolean, proof: VerifiedProof | undefined): void {
  if (required && !proof) throw new errors.InvalidDpopProof('DPoP proof JWT not provided');
}

/**
 * The client_credentials requests whose replay answers are held (see HeldClaims): the grant takes
 * them in confirmClaims(). Only requests that reach Sigil's grant: a client that may not use the
 * grant is refused by oidc-provider before it, and the refusal must still name a replay first.
 */
export function holdsClaims(req: RequestLike): boolean {
  const oidc = req.oidc;
  return oidc?.route === 'token' && oidc.params?.grant_type === 'client_credentials' && oidc.client?.grantTypeAllowed?.('client_credentials') === true;
}

/**
 * Waits for this request's held replay answers; a replayed client assertion (or one issued before
 * Redis lost its replay records) is invalid_client, such a proof invalid_dpop_proof. Rejects with
 * StorageUnavailable (503) when Redis failed or is not trusted yet.
 */
export async function confirmClaims(ctx: object, held: HeldClaims | undefined): Promise<void> {
  if (!held) return;
  for (const claim of held.take(ctx)) {
    const verdict = await claim.verdict;
    if (verdict === 'free') continue;
    if (verdict === 'predates-loss') throw predatesLoss(claim.kind);
    throw claim.kind === 'assertion'
      ? new errors.InvalidClientAuth('client assertion tokens must only be used once')
      : new errors.InvalidDpopProof('DPoP proof JWT Replay detected');
  }
}

/**
 * Runs a grant's work while the request's held replay answers arrive. Nothing the work produced is
 * used before they say "free"; when the work fails, a replayed assertion is still the answer given
 * (as if it had been checked first, as oidc-provider does when nothing is held).
 */
export async function whileConfirming<T>(ctx: object, held: HeldClaims | undefined, work: () => Promise<T>): Promise<T> {
  if (!held) return work();
  // the assertion's answer (held during client authentication); awaited on both paths below
  const assertion = confirmClaims(ctx, held);
  assertion.catch(() => {});
  try {
    let result: T;
    try {
      result = await work();
    } catch (err) {
      await assertion;
      throw err;
    }
    await assertion;
    // the proof's claim, made by bindToProofKey during the work; answered by the same round trip
    await confirmClaims(ctx, held);
    return result;
  } finally {
    // anything still held belongs to a request that is refused already
    held.take(ctx);
  }
}

/** Bind the token to the proof's key after claiming the proof's jti (a replayed proof is a bad proof). */
export async function bindToProofKey(provider: Provider, ctx: KoaContextWithOIDC, dPoP: VerifiedProof | undefined, token: Bindable): Promise<void> {
  if (!dPoP) return;
  // as oidc-provider's checkDpopReplay, without building an error for every request that succeeds
  const unique = await provider.ReplayDetection.unique(ctx.oidc.client!.clientId, dPoP.jti, Math.floor(Date.now() / 1000) + PROOF_REPLAY_WINDOW_SECONDS);
  if (!unique) throw new errors.InvalidDpopProof('DPoP proof JWT Replay detected');
  token.setThumbprint('jkt', dPoP.thumbprint);
}

/**
 * Claims a grant wants on the token it is about to save (e.g. `act`). oidc-provider only lets
 * extraTokenClaims add claims, and that hook sees the token, not the grant: this hands them over.
 */
export const pendingClaims = new WeakMap<object, Record<string, unknown>>();
