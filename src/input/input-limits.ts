// Shapes no legitimate input has, refused before oidc-provider, Postgres or any recursive code
// (structuredClone, JSON.stringify, jsonb) sees them. Linear scans of the text, no recursion.

/**
 * Deepest JSON accepted, in a JWT or a request body. The deepest legitimate documents: an access
 * token with the longest delegation chain (DELEGATION_DEPTH_CEILING `act` levels, 11 deep) and registration
 * metadata (jwks.keys[].x5c[], 5 deep). Thousands of levels overflow the stack in structuredClone.
 */
export const MAX_JSON_DEPTH = 16;
/** the most MAX_DELEGATION_DEPTH may allow: a token with a longer `act` chain could not be presented again */
export const DELEGATION_DEPTH_CEILING = 10;
/**
 * Longest JWT accepted (assertion, proof, subject or actor token). The largest legitimate ones, an
 * RS256 assertion or a proof carrying an 8192-bit RSA key, are about 2.5 KiB.
 */
export const MAX_JWT_LENGTH = 8 * 1024;

const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** C0 controls and DEL, raw or percent-encoded: no OAuth parameter may contain one (RFC 6749 Appendix A) */
const CONTROL = /[\u0000-\u001f\u007f]|%[01][0-9a-f]|%7f/i;

/** Whether a form body or request target carries a control character, raw or percent-encoded. */
export function hasControlCharacter(text: string): boolean {
  return CONTROL.test(text);
}

/**
 * Why a JSON text must not be parsed, or undefined: nested deeper than `maxDepth`, or a string
 * holding U+0000 (Postgres text and jsonb cannot store it) or a lone surrogate (jsonb refuses it).
 * Does not check that the text is JSON; JSON.parse does that afterwards.
 */
export function jsonTextProblem(text: string, maxDepth = MAX_JSON_DEPTH): string | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x22) inString = false;
      else if (c === 0x5c) {
        if (text.charCodeAt(i + 1) !== 0x75) {
          i++;
          continue;
        }
        const unit = parseInt(text.slice(i + 2, i + 6), 16);
        if (unit === 0) return 'contains U+0000';
        if (unit >= 0xd800 && unit <= 0xdbff) {
          // a high surrogate must be followed by an escaped low one
          const next = text.charCodeAt(i + 6) === 0x5c && text.charCodeAt(i + 7) === 0x75 ? parseInt(text.slice(i + 8, i + 12), 16) : NaN;
          if (!(next >= 0xdc00 && next <= 0xdfff)) return 'contains a lone surrogate';
          i += 6;
        } else if (unit >= 0xdc00 && unit <= 0xdfff) {
          return 'contains a lone surrogate';
        }
        i += 5;
      }
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return `is nested deeper than ${maxDepth} levels`;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return undefined;
}

/**
 * Why a value cannot be a JWT Sigil would read, or undefined: not a string, longer than
 * MAX_JWT_LENGTH, not three base64url segments (compact JWS; Sigil accepts no JWE), or a header or
 * payload that jsonTextProblem refuses. Signatures and claims are checked later, by their owners.
 */
export function jwtShapeProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'is not a string';
  if (value.length > MAX_JWT_LENGTH) return `is longer than ${MAX_JWT_LENGTH} characters`;
  const first = value.indexOf('.');
  const second = value.indexOf('.', first + 1);
  if (first < 0 || second < 0 || value.indexOf('.', second + 1) >= 0) return 'is not a compact JWS (three segments)';
  const header = value.slice(0, first);
  const payload = value.slice(first + 1, second);
  const signature = value.slice(second + 1);
  if (!BASE64URL.test(header) || !BASE64URL.test(payload) || !BASE64URL.test(signature)) return 'has a segment that is not base64url';
  const problem = jsonTextProblem(Buffer.from(header, 'base64url').toString('utf8')) ?? jsonTextProblem(Buffer.from(payload, 'base64url').toString('utf8'));
  return problem && `has JSON that ${problem}`;
}
