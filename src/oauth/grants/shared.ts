// Steps every Sigil grant shares.
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { DpopResult } from 'oidc-provider/lib/helpers/grants.js';
import type { SigningAlg } from '../../config.js';

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

/** how long a proof's jti is remembered: oidc-provider accepts a proof's iat up to this far off */
const PROOF_REPLAY_WINDOW_SECONDS = 300;

/** Bind the token to the proof's key after claiming the proof's jti (a replayed proof is a bad proof). */
export async function bindToProofKey(provider: Provider, ctx: KoaContextWithOIDC, dPoP: DpopResult | undefined, token: Bindable): Promise<void> {
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
