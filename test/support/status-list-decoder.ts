// An independent reader of IETF OAuth Token Status Lists (draft-ietf-oauth-status-list), written from
// the draft and NOT from Sigil's encoder:
//   - `lst` is the base64url (no padding) encoding of the ZLIB (RFC 1950) / DEFLATE compressed byte array;
//   - with `bits` = 1, the status of index i is bit (i mod 8), least significant bit first, of byte i div 8;
//     in general the status of index i is the `bits`-wide group starting at bit position i * bits;
//   - the Status List Token is a JWT with header `typ: statuslist+jwt`, and claims `sub` (the URI it was
//     fetched from, i.e. the `uri` in the Referenced Token), `iat`, optional `exp` and `ttl`, and
//     `status_list: { bits, lst }`.
import assert from 'node:assert/strict';
import { inflateSync } from 'node:zlib';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTHeaderParameters, type JWTPayload } from 'jose';

export const STATUS_LIST_MEDIA_TYPE = 'application/statuslist+jwt';

export interface DecodedStatusList {
  bits: 1 | 2 | 4 | 8;
  /** the inflated byte array */
  bytes: Uint8Array;
  /** how many statuses the byte array holds */
  size: number;
  /** the status value at `index` (0 = VALID, 1 = INVALID); RangeError outside the list */
  status(index: number): number;
  /** every index whose status is not 0, ascending */
  nonZero(): number[];
}

/** Decode a `status_list` claim: base64url, zlib inflate, then read `bits`-wide groups, LSB first. */
export function decodeStatusList(claim: { bits?: unknown; lst?: unknown }): DecodedStatusList {
  const { bits, lst } = claim;
  if (bits !== 1 && bits !== 2 && bits !== 4 && bits !== 8) throw new Error(`status_list.bits must be 1, 2, 4 or 8, got ${String(bits)}`);
  if (typeof lst !== 'string' || !/^[A-Za-z0-9_-]+$/.test(lst)) throw new Error('status_list.lst must be a non-empty base64url string without padding');
  // inflateSync (not inflateRawSync): the draft mandates the ZLIB format, header and checksum included
  const bytes = new Uint8Array(inflateSync(Buffer.from(lst, 'base64url')));
  const size = (bytes.length * 8) / bits;
  const mask = (1 << bits) - 1;
  const status = (index: number): number => {
    if (!Number.isInteger(index) || index < 0 || index >= size) throw new RangeError(`index ${index} outside the list (size ${size})`);
    const position = index * bits;
    return (bytes[position >> 3]! >> (position & 7)) & mask;
  };
  return {
    bits,
    bytes,
    size,
    status,
    nonZero() {
      const out: number[] = [];
      const perByte = 8 / bits;
      for (let b = 0; b < bytes.length; b++) {
        if (bytes[b] === 0) continue;
        for (let k = 0; k < perByte; k++) {
          const index = b * perByte + k;
          if (status(index) !== 0) out.push(index);
        }
      }
      return out;
    },
  };
}

export interface VerifiedStatusListToken {
  jwt: string;
  header: JWTHeaderParameters;
  payload: JWTPayload & { ttl?: number; status_list: { bits: number; lst: string } };
  list: DecodedStatusList;
}

/**
 * Verify a Status List Token as a relying party must: signature by one of the issuer's keys (the JWKS
 * given), `typ` statuslist+jwt, a `kid` naming a key of that set, `sub` equal to the URI it was
 * referenced by, `iat`, `exp` after `iat`, a positive `ttl`, and a decodable 1-bit status list.
 */
export async function verifyStatusListToken(jwt: string, jwks: JSONWebKeySet, uri: string, opts: { issuer?: string } = {}): Promise<VerifiedStatusListToken> {
  const { payload, protectedHeader } = await jwtVerify(jwt, createLocalJWKSet(jwks), {
    typ: 'statuslist+jwt',
    subject: uri,
    ...(opts.issuer ? { issuer: opts.issuer } : {}),
  });
  assert.equal(protectedHeader.typ, 'statuslist+jwt', 'header typ');
  assert.equal(typeof protectedHeader.kid, 'string', 'header kid');
  assert.ok(jwks.keys.some((k) => k.kid === protectedHeader.kid), `kid ${protectedHeader.kid} is one of the JWKS keys`);
  assert.equal(payload.sub, uri, 'sub is the status list URI');
  assert.equal(typeof payload.iat, 'number', 'iat');
  assert.equal(typeof payload.exp, 'number', 'exp');
  assert.ok(payload.exp! > payload.iat!, `exp (${payload.exp}) after iat (${payload.iat})`);
  const ttl = (payload as { ttl?: unknown }).ttl;
  assert.ok(typeof ttl === 'number' && Number.isInteger(ttl) && ttl > 0, `ttl is a positive integer, got ${String(ttl)}`);
  const sl = (payload as { status_list?: { bits?: unknown; lst?: unknown } }).status_list;
  assert.ok(sl && typeof sl === 'object', 'status_list claim');
  assert.equal(sl.bits, 1, 'status_list.bits');
  const list = decodeStatusList(sl);
  return { jwt, header: protectedHeader, payload: payload as VerifiedStatusListToken['payload'], list };
}

export interface FetchedStatusList extends VerifiedStatusListToken {
  contentType: string | null;
}

/** The URL to fetch `uri` from a given instance: the same path on that instance's own address. */
export function onInstance(uri: string, baseUrl: string): string {
  const u = new URL(uri);
  return `${baseUrl}${u.pathname}${u.search}`;
}

/** GET the list `uri` names from the instance at `baseUrl`, verified with that instance's /jwks. */
export async function fetchStatusList(baseUrl: string, uri: string, opts: { issuer?: string } = {}): Promise<FetchedStatusList> {
  const res = await fetch(onInstance(uri, baseUrl), { headers: { accept: STATUS_LIST_MEDIA_TYPE } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${uri} on ${baseUrl}: ${res.status} ${text.slice(0, 300)}`);
  const jwks = (await (await fetch(`${baseUrl}/jwks`)).json()) as JSONWebKeySet;
  const verified = await verifyStatusListToken(text.trim(), jwks, uri, opts);
  return { ...verified, contentType: res.headers.get('content-type') };
}

/** The status bit at `idx` of the list at `uri`, as the instance at `baseUrl` serves it now. */
export async function statusBit(baseUrl: string, ref: { uri: string; idx: number }): Promise<number> {
  return (await fetchStatusList(baseUrl, ref.uri)).list.status(ref.idx);
}

/** The `status.status_list` reference of an access token (JWT), read without verification. */
export function statusRef(accessToken: string): { uri: string; idx: number } {
  const payload = JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString('utf8')) as { status?: { status_list?: { uri?: unknown; idx?: unknown } } };
  const ref = payload.status?.status_list;
  if (!ref || typeof ref.uri !== 'string' || typeof ref.idx !== 'number') throw new Error(`the token carries no status.status_list {idx, uri}: ${JSON.stringify(payload.status)}`);
  return { uri: ref.uri, idx: ref.idx };
}
