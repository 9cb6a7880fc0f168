// Hand-rolled compact JWS signing with node:crypto for the load generator. It produces the same
// client assertions and DPoP proofs as src/client/oauth-client.ts (jose), about 3x cheaper, so that
// building a large pool of them before a timed phase takes seconds, not minutes.
import { createPrivateKey, randomUUID, sign, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';

export interface PairSpec {
  clientId: string;
  /** the client's private JWK (ES256 or EdDSA) */
  clientJwk: JWK;
  /** the DPoP private JWK (ES256 or EdDSA) */
  dpopJwk: JWK;
  /** assertion audience: the issuer */
  aud: string;
  /** DPoP htu: the issuer-based token endpoint URL */
  htu: string;
  /** extra form parameters (scope, resource), already in the request */
  extra?: Record<string, string>;
  /** assertion lifetime in seconds */
  lifetime: number;
}

/** One token request, ready to send: the form body (with a fresh assertion) and a fresh DPoP proof. */
export interface Pair {
  body: string;
  dpop: string;
}

interface Signer {
  alg: string;
  key: KeyObject;
  kid?: string;
  publicJwk: JWK;
}

function signer(jwk: JWK): Signer {
  const alg = jwk.kty === 'EC' && jwk.crv === 'P-256' ? 'ES256' : jwk.kty === 'OKP' && jwk.crv === 'Ed25519' ? 'EdDSA' : undefined;
  if (!alg) throw new Error(`the load generator signs with ES256 or EdDSA keys only, not ${jwk.kty}/${jwk.crv ?? ''}`);
  const { kty, crv, x, y } = jwk;
  const publicJwk = Object.fromEntries(Object.entries({ kty, crv, x, y }).filter(([, v]) => v !== undefined)) as JWK;
  return { alg, key: createPrivateKey({ key: jwk as never, format: 'jwk' }), kid: jwk.kid, publicJwk };
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

function jws(s: Signer, header: object, payload: object): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const sig = s.alg === 'ES256'
    ? sign('sha256', Buffer.from(input), { key: s.key, dsaEncoding: 'ieee-p1363' })
    : sign(null, Buffer.from(input), s.key);
  return `${input}.${sig.toString('base64url')}`;
}

/** Returns a function that makes fresh pairs (new jti, current iat) for one client and DPoP key. */
export function pairMaker(spec: PairSpec): () => Pair {
  const client = signer(spec.clientJwk);
  const dpop = signer(spec.dpopJwk);
  const assertionHeader = { alg: client.alg, typ: 'client-authentication+jwt', ...(client.kid ? { kid: client.kid } : {}) };
  const proofHeader = { alg: dpop.alg, typ: 'dpop+jwt', jwk: dpop.publicJwk };
  const prefix = new URLSearchParams({
    grant_type: 'client_credentials',
    ...spec.extra,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  }).toString();
  return () => {
    const iat = Math.floor(Date.now() / 1000);
    const assertion = jws(client, assertionHeader, { iss: spec.clientId, sub: spec.clientId, aud: spec.aud, iat, exp: iat + spec.lifetime, jti: randomUUID() });
    const proof = jws(dpop, proofHeader, { htm: 'POST', htu: spec.htu, iat, jti: randomUUID() });
    // a compact JWS is base64url and dots: nothing to percent-encode
    return { body: `${prefix}&client_assertion=${assertion}`, dpop: proof };
  };
}
