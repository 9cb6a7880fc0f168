// What a client may register as its public keys. Shared by the admin API (the authority) and the
// CLI (to refuse a bad file before sending it).

/** algorithms accepted for client assertions and DPoP proofs; nothing else, ever (no HS*, no none) */
export const CLIENT_SIGNING_ALGS = ['ES256', 'EdDSA', 'PS256', 'RS256'] as const;

/** JWK members that belong to a private or secret key */
export const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const ALG_FOR_KTY: Record<string, string[]> = {
  EC: ['ES256'],
  OKP: ['EdDSA'],
  RSA: ['PS256', 'RS256'],
};
export const MAX_CLIENT_KEYS = 10;
export const MIN_RSA_BITS = 2048;

function base64urlBytes(value: unknown): number {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]+$/.test(value)) return -1;
  return Buffer.from(value, 'base64url').length;
}

/** Problems with a public JWKS, as sentences a person can act on; empty when the JWKS is acceptable. */
export function jwksProblems(jwks: unknown): string[] {
  if (!jwks || typeof jwks !== 'object' || Array.isArray(jwks)) return ['the JWKS must be a JSON object with a "keys" array'];
  const keys = (jwks as { keys?: unknown }).keys;
  if (!Array.isArray(keys) || keys.length === 0) return ['the JWKS must have a non-empty "keys" array'];
  if (keys.length > MAX_CLIENT_KEYS) return [`the JWKS may hold at most ${MAX_CLIENT_KEYS} keys`];
  const problems: string[] = [];
  const kids = new Set<string>();
  keys.forEach((key: unknown, i) => {
    const at = `key ${i}`;
    if (!key || typeof key !== 'object' || Array.isArray(key)) {
      problems.push(`${at} is not a JSON object`);
      return;
    }
    const k = key as Record<string, unknown>;
    const secret = PRIVATE_MEMBERS.filter((m) => m in k);
    if (secret.length) problems.push(`${at} contains private or secret members (${secret.join(', ')}); register only the public key`);
    const kty = k.kty;
    if (typeof kty !== 'string' || !(kty in ALG_FOR_KTY)) {
      problems.push(`${at} has kty ${JSON.stringify(kty)}; allowed: EC (P-256), OKP (Ed25519), RSA (>= ${MIN_RSA_BITS} bits)`);
      return;
    }
    if (k.alg !== undefined && !ALG_FOR_KTY[kty]!.includes(k.alg as string)) {
      problems.push(`${at} has alg ${JSON.stringify(k.alg)}; allowed for ${kty}: ${ALG_FOR_KTY[kty]!.join(', ')}`);
    }
    if (k.use !== undefined && k.use !== 'sig') problems.push(`${at} has use ${JSON.stringify(k.use)}; only "sig" is allowed`);
    if (k.kid !== undefined) {
      if (typeof k.kid !== 'string' || k.kid.length === 0) problems.push(`${at} has a kid that is not a non-empty string`);
      else if (kids.has(k.kid)) problems.push(`${at} repeats kid "${k.kid}"`);
      else kids.add(k.kid);
    }
    if (kty === 'EC') {
      if (k.crv !== 'P-256') problems.push(`${at} has crv ${JSON.stringify(k.crv)}; only P-256 is allowed for EC`);
      else if (base64urlBytes(k.x) !== 32 || base64urlBytes(k.y) !== 32) problems.push(`${at} has malformed x/y coordinates`);
    } else if (kty === 'OKP') {
      if (k.crv !== 'Ed25519') problems.push(`${at} has crv ${JSON.stringify(k.crv)}; only Ed25519 is allowed for OKP`);
      else if (base64urlBytes(k.x) !== 32) problems.push(`${at} has a malformed x`);
    } else {
      const n = base64urlBytes(k.n);
      if (n < 0 || base64urlBytes(k.e) < 1) problems.push(`${at} has a malformed modulus or exponent`);
      else if (n * 8 < MIN_RSA_BITS) problems.push(`${at} is a ${n * 8}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`);
    }
  });
  return problems;
}
