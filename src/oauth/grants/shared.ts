// Steps every Sigil grant shares.
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { checkDpopReplay, type DpopResult } from 'oidc-provider/lib/helpers/grants.js';
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

/** Bind the token to the proof's key after claiming the proof's jti (a replayed proof is a bad proof). */
export async function bindToProofKey(provider: Provider, ctx: KoaContextWithOIDC, dPoP: DpopResult | undefined, token: Bindable): Promise<void> {
  if (!dPoP) return;
  await checkDpopReplay(provider, ctx, dPoP, ctx.oidc.client!.clientId, errors.InvalidDpopProof);
  token.setThumbprint('jkt', dPoP.thumbprint);
}

/**
 * Claims a grant wants on the token it is about to save (e.g. `act`). oidc-provider only lets
 * extraTokenClaims add claims, and that hook sees the token, not the grant: this hands them over.
 */
export const pendingClaims = new WeakMap<object, Record<string, unknown>>();
