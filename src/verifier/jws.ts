// Compact JWS, checked with node:crypto synchronously: cheaper than a WebCrypto job and its thread
// hop for a ~50 µs operation that runs on every API call. Only asymmetric algorithms exist here: no
// `none`, no HS* (a public key used as an HMAC secret is the classic confusion).
import { constants, verify, type KeyObject } from 'node:crypto';

export interface AlgSpec {
  kty: 'EC' | 'OKP' | 'RSA';
  crv?: string;
  verify(data: Buffer, key: KeyObject, signature: Buffer): boolean;
}

export const ALGORITHMS: Readonly<Record<string, AlgSpec>> = {
  ES256: { kty: 'EC', crv: 'P-256', verify: (d, key, s) => s.length === 64 && verify('sha256', d, { key, dsaEncoding: 'ieee-p1363' }, s) },
  ES384: { kty: 'EC', crv: 'P-384', verify: (d, key, s) => s.length === 96 && verify('sha384', d, { key, dsaEncoding: 'ieee-p1363' }, s) },
  EdDSA: { kty: 'OKP', crv: 'Ed25519', verify: (d, key, s) => s.length === 64 && verify(null, d, key, s) },
  Ed25519: { kty: 'OKP', crv: 'Ed25519', verify: (d, key, s) => s.length === 64 && verify(null, d, key, s) },
  PS256: { kty: 'RSA', verify: (d, key, s) => verify('sha256', d, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, s) },
  RS256: { kty: 'RSA', verify: (d, key, s) => verify('sha256', d, { key, padding: constants.RSA_PKCS1_PADDING }, s) },
};

export const SUPPORTED_ALGORITHMS: readonly string[] = Object.keys(ALGORITHMS);

const COMPACT_JWS = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/;

export interface CompactJws {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  /** `header.payload`, what the signature covers */
  signingInput: string;
  signature: Buffer;
}

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function json(segment: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Splits and decodes a compact JWS; undefined when it is not one (nothing is verified yet). */
export function parseJws(text: string, maxLength: number): CompactJws | undefined {
  if (text.length > maxLength) return undefined;
  const m = COMPACT_JWS.exec(text);
  if (!m) return undefined;
  const header = json(m[1]!);
  const payload = header && json(m[2]!);
  if (!header || !payload) return undefined;
  return { header, payload, signingInput: `${m[1]}.${m[2]}`, signature: Buffer.from(m[3]!, 'base64url') };
}

/** `typ` as RFC 8725 §3.11 has it: the media type, with or without `application/`, any case. */
export function hasType(header: Record<string, unknown>, type: string): boolean {
  const typ = header.typ;
  if (typeof typ !== 'string') return false;
  const t = typ.toLowerCase();
  return t === type || t === `application/${type}`;
}
