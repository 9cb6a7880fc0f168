// Stateless DPoP server nonces: oidc-provider's ServerChallenge (HKDF of the time step under a shared
// secret), a deep import, so Sigil's own proof check hands out exactly the nonces oidc-provider would
// and every instance sharing the secret accepts them.
import ServerChallenge from 'oidc-provider/lib/helpers/challenge.js';
import type { ProofNonces } from '../tokens/dpop-proof.js';

/** `secret`: 32 bytes shared by every instance; `info`: what the nonces are for ('DPoP') */
export function serverNonces(secret: Buffer, info: string): ProofNonces {
  return new ServerChallenge(secret, info);
}
