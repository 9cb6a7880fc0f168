// A SPIFFE bundle as Sigil accepts it (SPIFFE "Trust Domain and Bundle" §4): a JWKS whose keys with
// use "x509-svid" carry one CA certificate and whose keys with use "jwt-svid" are JWT-SVID signing
// keys. A bundle is all or nothing: one bad key refuses the whole document (the last good bundle stays
// in use, src/workload/trust.ts), because a half-read bundle would silently drop an authority.
import { createPublicKey, X509Certificate } from 'node:crypto';
import type { JWK } from 'jose';
import { CLIENT_SIGNING_ALGS, KEY_TYPE_OF, PRIVATE_MEMBERS } from '../keys/algorithms.js';
import { jwkMembersProblem, keyMaterialProblem } from '../clients/client-keys.js';

/** A bundle carries a handful of authorities (SPIRE: a few, during rotation a few more); more is an error or an attack on our CPU. */
export const MAX_BUNDLE_KEYS = 64;
/** a DER certificate larger than this is no CA certificate anyone issues (and costs us to parse) */
export const MAX_CERTIFICATE_BYTES = 6144;

export interface SpiffeBundle {
  /** use jwt-svid: public JWKs (kty, crv, x, y / n, e, kid, alg when given; no use), each with a distinct kid */
  jwtAuthorities: JWK[];
  /** use x509-svid: the CA certificates */
  x509Authorities: X509Certificate[];
  /** spiffe_sequence: grows with every change the bundle endpoint publishes */
  sequence?: number;
  /** spiffe_refresh_hint: seconds until the bundle should be fetched again (before Sigil's clamp) */
  refreshHintSeconds?: number;
}

export type BundleAnswer = { ok: true; bundle: SpiffeBundle } | { ok: false; problems: string[] };

/** the types and curves Sigil verifies signatures with: as for client keys */
const ALGS_OF_KTY: Record<string, string[]> = {};
for (const alg of CLIENT_SIGNING_ALGS) (ALGS_OF_KTY[KEY_TYPE_OF[alg]] ??= []).push(alg);

function quoted(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/** The JWK's type, curve and algorithm, and its key material checked as for any key entering Sigil (client-keys.ts). */
function publicKeyProblem(k: Record<string, unknown>): string | undefined {
  const kty = k.kty;
  if (typeof kty !== 'string' || !(kty in ALGS_OF_KTY)) return `has kty ${quoted(kty)}; allowed: EC (P-256), OKP (Ed25519), RSA`;
  if (kty === 'EC' && k.crv !== 'P-256') return `has crv ${quoted(k.crv)}; only P-256 is allowed for EC`;
  if (kty === 'OKP' && k.crv !== 'Ed25519') return `has crv ${quoted(k.crv)}; only Ed25519 is allowed for OKP`;
  if (k.alg !== undefined && !ALGS_OF_KTY[kty]!.includes(k.alg as string)) return `has alg ${quoted(k.alg)}; allowed for ${kty}: ${ALGS_OF_KTY[kty]!.join(', ')}`;
  return keyMaterialProblem(k);
}

function publicMaterial(k: Record<string, unknown>): Record<string, unknown> {
  return k.kty === 'RSA' ? { kty: 'RSA', n: k.n, e: k.e } : k.kty === 'OKP' ? { kty: 'OKP', crv: k.crv, x: k.x } : { kty: 'EC', crv: k.crv, x: k.x, y: k.y };
}

/** An x509-svid key: exactly one CA certificate in x5c, and the key members (when given) its public key. */
function x509Authority(k: Record<string, unknown>): X509Certificate | string {
  const x5c = k.x5c;
  if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== 'string') return 'has use x509-svid but no x5c with exactly one certificate (SPIFFE bundle §4.2.1)';
  const b64 = x5c[0];
  // x5c is standard base64 (RFC 7517 §4.7), not base64url
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) return 'has an x5c certificate that is not base64 (RFC 7517 §4.7)';
  const der = Buffer.from(b64, 'base64');
  if (der.length > MAX_CERTIFICATE_BYTES) return `has an x5c certificate larger than ${MAX_CERTIFICATE_BYTES} bytes`;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return 'has an x5c value that is not a DER X.509 certificate';
  }
  // an X.509-SVID authority signs SVIDs: a leaf here would let its holder's key pass as a CA
  if (!cert.ca) return 'has an x5c certificate that is not a CA certificate (basicConstraints CA:TRUE is required of an X.509 authority)';
  // the certificate is the authority; key members, when present, must be its key (a CA's key type
  // is the mTLS verifier's business, e.g. SPIRE's ec-p384, not limited to the JWT algorithms)
  if (k.kty !== undefined) {
    let matches = false;
    try {
      const members = Object.fromEntries(['kty', 'crv', 'x', 'y', 'n', 'e'].filter((m) => k[m] !== undefined).map((m) => [m, k[m]]));
      matches = createPublicKey({ key: members as Record<string, string>, format: 'jwk' }).equals(cert.publicKey);
    } catch {
      // not a key at all: refused below
    }
    if (!matches) return 'has key members that are not the public key of its x5c certificate';
  }
  return cert;
}

/**
 * Checks a fetched SPIFFE bundle: the bundle, or every problem as a sentence (the first words name
 * the key: "key 3 ..."). Keys whose use is neither jwt-svid nor x509-svid are ignored, as the spec
 * says, but none may carry private members: an endpoint that publishes a private key is broken.
 */
export function parseSpiffeBundle(doc: unknown): BundleAnswer {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return { ok: false, problems: ['the bundle is not a JSON object'] };
  const d = doc as Record<string, unknown>;
  const keys = d.keys;
  if (!Array.isArray(keys)) return { ok: false, problems: ['the bundle has no "keys" array (it must be a JWKS)'] };
  if (keys.length > MAX_BUNDLE_KEYS) return { ok: false, problems: [`the bundle has ${keys.length} keys; at most ${MAX_BUNDLE_KEYS} are accepted`] };
  const problems: string[] = [];
  const seq = d.spiffe_sequence;
  if (seq !== undefined && !(Number.isSafeInteger(seq) && (seq as number) >= 0)) problems.push(`spiffe_sequence ${quoted(seq)} is not a non-negative integer`);
  const hint = d.spiffe_refresh_hint;
  if (hint !== undefined && !(Number.isSafeInteger(hint) && (hint as number) >= 0)) problems.push(`spiffe_refresh_hint ${quoted(hint)} is not a non-negative whole number of seconds`);
  const jwtAuthorities: JWK[] = [];
  const x509Authorities: X509Certificate[] = [];
  const kids = new Set<string>();
  keys.forEach((key: unknown, i) => {
    const at = `key ${i}`;
    if (!key || typeof key !== 'object' || Array.isArray(key)) {
      problems.push(`${at} is not a JSON object`);
      return;
    }
    const k = key as Record<string, unknown>;
    const secret = PRIVATE_MEMBERS.filter((m) => Object.hasOwn(k, m));
    if (secret.length) {
      problems.push(`${at} contains private or secret members (${secret.join(', ')}); a bundle publishes public keys only`);
      return;
    }
    if (k.use !== 'jwt-svid' && k.use !== 'x509-svid') return;
    const members = jwkMembersProblem(k);
    if (members) {
      problems.push(`${at} ${members}`);
      return;
    }
    if (k.use === 'x509-svid') {
      const cert = x509Authority(k);
      if (typeof cert === 'string') problems.push(`${at} ${cert}`);
      else x509Authorities.push(cert);
      return;
    }
    // JWT-SVID §3: the kid is how a verifier picks the key; a bundle key without one cannot be chosen
    if (typeof k.kid !== 'string') {
      problems.push(`${at} has use jwt-svid but no kid (SPIFFE bundle §4.2.2 requires one)`);
      return;
    }
    if (kids.has(k.kid)) {
      problems.push(`${at} repeats kid ${quoted(k.kid)}`);
      return;
    }
    kids.add(k.kid);
    const problem = publicKeyProblem(k);
    if (problem) {
      problems.push(`${at} ${problem}`);
      return;
    }
    // no `use`: "jwt-svid" is what put it here, and JWKS helpers (jose's among them) skip keys whose use is not "sig"
    jwtAuthorities.push({ ...publicMaterial(k), kid: k.kid, ...(k.alg !== undefined ? { alg: k.alg as string } : {}) } as JWK);
  });
  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    bundle: {
      jwtAuthorities,
      x509Authorities,
      ...(seq !== undefined ? { sequence: seq as number } : {}),
      ...(hint !== undefined ? { refreshHintSeconds: hint as number } : {}),
    },
  };
}
