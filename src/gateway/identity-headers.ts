// What the upstream learns about the caller: X-Sigil-* headers on the 200 answer, which the gateway
// copies onto the request it forwards. A header value can carry neither CR/LF (a second header, or a
// split request) nor, portably, anything outside visible ASCII, so: `act` is JSON with every
// non-ASCII character \u-escaped (always representable), and a sub, client_id, scope or jti holding
// anything else is refused rather than altered — the upstream must never read a different name.
import type { AccessTokenClaims } from '../verifier/index.js';

export const IDENTITY_HEADERS = ['X-Sigil-Client-Id', 'X-Sigil-Sub', 'X-Sigil-Scope', 'X-Sigil-Jti', 'X-Sigil-Act'] as const;

/** visible ASCII, single spaces allowed inside (scope is space-separated) */
const SAFE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** JSON whose every character outside visible ASCII is a \u escape */
export function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The identity headers, or the name of the claim that cannot be carried in one. */
export function identityHeaders(claims: AccessTokenClaims): { headers: Record<string, string> } | { unsafeClaim: string } {
  const plain: [string, unknown][] = [['X-Sigil-Client-Id', claims.client_id], ['X-Sigil-Sub', claims.sub], ['X-Sigil-Jti', claims.jti]];
  // always sent (empty when the token has none), so a gateway that copies it overwrites whatever the client sent
  const headers: Record<string, string> = { 'X-Sigil-Scope': '' };
  if (claims.scope) plain.push(['X-Sigil-Scope', claims.scope]);
  for (const [name, value] of plain) {
    if (typeof value !== 'string' || !SAFE.test(value)) return { unsafeClaim: name.slice('X-Sigil-'.length).toLowerCase().replace('-', '_') };
    headers[name] = value;
  }
  if (claims.act !== undefined) headers['X-Sigil-Act'] = asciiJson(claims.act);
  return { headers };
}
