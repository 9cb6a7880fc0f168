// The algorithms Sigil signs and accepts, and what makes a JWK private: one copy, read by the server,
// the CLI and the client library alike (so this file imports nothing).
import type { JWK } from 'jose';

/** algorithms Sigil's own keys may use (SIGNING_ALG); the JWKS decides which key verifies what */
export const SIGNING_ALGS = ['ES256', 'EdDSA', 'PS256'] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

/** algorithms accepted for client assertions and DPoP proofs; nothing else, ever (no HS*, no none) */
export const CLIENT_SIGNING_ALGS = [...SIGNING_ALGS, 'RS256'] as const;
export type ClientSigningAlg = (typeof CLIENT_SIGNING_ALGS)[number];

/** the key type (JWK kty) each algorithm signs with */
export const KEY_TYPE_OF: Readonly<Record<ClientSigningAlg, 'EC' | 'OKP' | 'RSA'>> = { ES256: 'EC', EdDSA: 'OKP', PS256: 'RSA', RS256: 'RSA' };

/** JWK members that belong to a private or secret key */
export const PRIVATE_MEMBERS: readonly string[] = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** The JWK without its private members. */
export function publicPart(jwk: JWK): JWK {
  return Object.fromEntries(Object.entries(jwk).filter(([k]) => !PRIVATE_MEMBERS.includes(k))) as JWK;
}
