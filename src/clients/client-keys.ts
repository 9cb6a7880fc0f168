// What a client may register as its public keys, and what a public key must be wherever one enters
// Sigil: admin create and `keys set`, registration (RFC 7591/7592), jwks_uri documents and DPoP proof
// keys. One rule for all of them; the CLI uses it too, to refuse a bad file before sending it.
import { createPublicKey } from 'node:crypto';

import { CLIENT_SIGNING_ALGS, KEY_TYPE_OF, PRIVATE_MEMBERS } from '../keys/algorithms.js';

// where they are, for the callers that knew them here
export { CLIENT_SIGNING_ALGS, PRIVATE_MEMBERS } from '../keys/algorithms.js';
/** the algorithms a key of each type may name: { EC: [ES256], OKP: [EdDSA], RSA: [PS256, RS256] } */
const ALG_FOR_KTY: Record<string, string[]> = {};
for (const alg of CLIENT_SIGNING_ALGS) (ALG_FOR_KTY[KEY_TYPE_OF[alg]] ??= []).push(alg);
export const MAX_CLIENT_KEYS = 10;
export const MIN_RSA_BITS = 2048;
/** RSA verification cost grows with the modulus: an attacker's 16k-bit key must not be our problem */
export const MAX_RSA_BITS = 8192;
/** e = 65537, what every mainstream generator uses: e = 1 lets anyone forge, a huge e makes every check slow */
export const RSA_PUBLIC_EXPONENT = 'AQAB';
export const MAX_KID_LENGTH = 128;
/** longer than any legitimate member (an 8192-bit n is 1366 characters, an x5c certificate a few thousand) */
const MAX_MEMBER_LENGTH = 8192;
const MAX_MEMBER_NAME_LENGTH = 64;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

const ED25519_P = 2n ** 255n - 19n;
/** y of the Ed25519 points of order 8 (the others of small order have y = 0, 1 or p - 1) */
const ED25519_ORDER_8_Y = 2707385501144840649318225287225658788936804267575313519463743609750303402022n;
/** y of every Ed25519 point of small order: such a "public key" verifies signatures nobody made */
const ED25519_SMALL_ORDER_Y = new Set([0n, 1n, ED25519_P - 1n, ED25519_ORDER_8_Y, ED25519_P - ED25519_ORDER_8_Y]);

/** The bytes of a base64url value (RFC 7515 §2: no padding), only when it is their one encoding. */
function canonicalBase64url(value: unknown): Buffer | undefined {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]+$/.test(value)) return undefined;
  const bytes = Buffer.from(value, 'base64url');
  return bytes.toString('base64url') === value ? bytes : undefined;
}

/** a partner's value, shortened and escaped for a message */
function quoted(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/**
 * Every member of a JWK: its name and each string in it printable ASCII (they reach logs and the
 * operator's terminal), `kid` at most MAX_KID_LENGTH characters. Undefined when acceptable, else
 * what is wrong, phrased to follow "key N " or "DPoP proof jwk ". `checkedElsewhere`: members the
 * caller checks more strictly itself (the hot path skips them).
 */
export function jwkMembersProblem(jwk: Record<string, unknown>, checkedElsewhere?: ReadonlySet<string>): string | undefined {
  for (const name in jwk) {
    if (checkedElsewhere?.has(name) || !Object.hasOwn(jwk, name)) continue;
    if (name.length > MAX_MEMBER_NAME_LENGTH || !PRINTABLE_ASCII.test(name)) {
      return `has a member name that is not printable ASCII of at most ${MAX_MEMBER_NAME_LENGTH} characters`;
    }
    const value = jwk[name];
    if (value === undefined) continue;
    if (name === 'kid') {
      if (typeof value !== 'string' || value.length === 0) return 'has a kid that is not a non-empty string';
      if (value.length > MAX_KID_LENGTH || !PRINTABLE_ASCII.test(value)) return `has a kid that is not 1 to ${MAX_KID_LENGTH} printable ASCII characters`;
      continue;
    }
    if (typeof value === 'number' || typeof value === 'boolean') continue;
    const strings = typeof value === 'string' ? [value] : Array.isArray(value) && value.every((v) => typeof v === 'string') ? value as string[] : undefined;
    if (!strings) return `has a member ${quoted(name)} that is not a string, number, boolean or list of strings`;
    if (strings.some((s) => s.length > MAX_MEMBER_LENGTH || !PRINTABLE_ASCII.test(s))) {
      return `has a member ${quoted(name)} that is not printable ASCII of at most ${MAX_MEMBER_LENGTH} characters`;
    }
  }
  return undefined;
}

/** An RSA public key's numbers: e = 65537, n of MIN..MAX_RSA_BITS bits, odd, minimally encoded. */
export function rsaKeyProblem(n: unknown, e: unknown): string | undefined {
  if (e !== RSA_PUBLIC_EXPONENT) return `has the RSA exponent e = ${quoted(e)}; only 65537 ("${RSA_PUBLIC_EXPONENT}") is accepted`;
  const modulus = canonicalBase64url(n);
  if (!modulus) return 'has a malformed modulus n (expected base64url without padding)';
  if (modulus[0] === 0) return 'has a modulus n with a leading zero byte (RFC 7518 §6.3.1.1: no leading zeros)';
  const bits = modulus.length * 8 - (Math.clz32(modulus[0]!) - 24);
  if (bits < MIN_RSA_BITS) return `is a ${bits}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`;
  if (bits > MAX_RSA_BITS) return `is a ${bits}-bit RSA key; at most ${MAX_RSA_BITS} bits are accepted`;
  if ((modulus[modulus.length - 1]! & 1) === 0) return 'has an even RSA modulus n, which no RSA key has';
  return undefined;
}

/** An Ed25519 public key: 32 bytes, a canonical encoding, not a point of small order. */
export function ed25519KeyProblem(x: unknown): string | undefined {
  const bytes = canonicalBase64url(x);
  if (!bytes || bytes.length !== 32) return 'has a malformed x (expected 32 bytes, base64url without padding)';
  // RFC 8032 §5.1.3: little-endian y, the top bit is the sign of x
  const y = BigInt(`0x${Buffer.from(bytes).reverse().toString('hex')}`) & ((1n << 255n) - 1n);
  if (y >= ED25519_P) return 'has a non-canonical point encoding in x';
  if (ED25519_SMALL_ORDER_Y.has(y)) return 'is an Ed25519 point of small order, for which signatures can be forged';
  return undefined;
}

/** An EC P-256 public key's coordinates: 32 bytes each, canonical (node:crypto refuses points off the curve). */
export function p256KeyProblem(x: unknown, y: unknown): string | undefined {
  if (canonicalBase64url(x)?.length !== 32 || canonicalBase64url(y)?.length !== 32) {
    return 'has malformed x/y coordinates (expected 32 bytes each, base64url without padding)';
  }
  return undefined;
}

/** What is wrong with a public key of an accepted type and curve (`kty` and `crv` already checked); SPIFFE bundles use it too. */
export function keyMaterialProblem(k: Record<string, unknown>): string | undefined {
  const problem = k.kty === 'RSA' ? rsaKeyProblem(k.n, k.e) : k.kty === 'OKP' ? ed25519KeyProblem(k.x) : p256KeyProblem(k.x, k.y);
  if (problem) return problem;
  const material = k.kty === 'RSA' ? { kty: 'RSA', n: k.n, e: k.e } : k.kty === 'OKP' ? { kty: 'OKP', crv: k.crv, x: k.x } : { kty: 'EC', crv: k.crv, x: k.x, y: k.y };
  try {
    createPublicKey({ key: material as unknown as Record<string, string>, format: 'jwk' });
  } catch {
    return k.kty === 'EC' ? 'is not a point on the P-256 curve' : 'is not a valid public key';
  }
  return undefined;
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
    const members = jwkMembersProblem(k);
    if (members) {
      problems.push(`${at} ${members}`);
      return;
    }
    const kty = k.kty;
    if (typeof kty !== 'string' || !(kty in ALG_FOR_KTY)) {
      problems.push(`${at} has kty ${quoted(kty)}; allowed: EC (P-256), OKP (Ed25519), RSA (${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits, e = 65537)`);
      return;
    }
    if (k.alg !== undefined && !ALG_FOR_KTY[kty]!.includes(k.alg as string)) {
      problems.push(`${at} has alg ${quoted(k.alg)}; allowed for ${kty}: ${ALG_FOR_KTY[kty]!.join(', ')}`);
    }
    if (k.use !== undefined && k.use !== 'sig') problems.push(`${at} has use ${quoted(k.use)}; only "sig" is allowed`);
    if (typeof k.kid === 'string') {
      if (kids.has(k.kid)) problems.push(`${at} repeats kid ${quoted(k.kid)}`);
      else kids.add(k.kid);
    }
    if (kty === 'EC' && k.crv !== 'P-256') problems.push(`${at} has crv ${quoted(k.crv)}; only P-256 is allowed for EC`);
    else if (kty === 'OKP' && k.crv !== 'Ed25519') problems.push(`${at} has crv ${quoted(k.crv)}; only Ed25519 is allowed for OKP`);
    else if (!secret.length) {
      const material = keyMaterialProblem(k);
      if (material) problems.push(`${at} ${material}`);
    }
  });
  return problems;
}
