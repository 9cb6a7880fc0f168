// What counts as printable text. Client names, URIs and reasons end up in an operator's terminal
// (`sigil clients show`), so the server refuses anything else in them and the CLI escapes it on output.

/**
 * Code points that are not printable text: controls (C0, DEL, C1), format characters (bidi embeddings,
 * overrides and isolates, zero-width characters, BOM, tags), line and paragraph separators, lone
 * surrogates, private use and unassigned code points.
 */
export const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Co}\p{Cn}]/u;

/** RFC 3986 allows only printable ASCII in a URI (anything else is percent-encoded); space is not allowed either. */
const URI_CHARACTERS = /^[\x21-\x7e]*$/;

/**
 * Why `value` is not a printable string of 1 to `max` characters (code points), or undefined when it is.
 * `field` names it in the sentence.
 */
export function printableTextProblem(value: unknown, field: string, max: number): string | undefined {
  if (typeof value !== 'string' || !value.trim()) return `${field} must be a non-empty string`;
  if ([...value].length > max) return `${field} must be at most ${max} characters`;
  if (NOT_PRINTABLE.test(value)) {
    return `${field} must be printable text: no control characters (C0, C1, DEL, newlines), bidi or zero-width format characters, line separators, private-use or unassigned code points`;
  }
  return undefined;
}

/** Why `value` is not a URI of printable ASCII (no space) and at most `max` characters, or undefined when it is. */
export function uriTextProblem(value: unknown, field: string, max = 2000): string | undefined {
  if (typeof value !== 'string' || value === '') return `${field} must be a non-empty string`;
  if (value.length > max) return `${field} must be at most ${max} characters`;
  if (!URI_CHARACTERS.test(value)) return `${field} must be written in printable ASCII without spaces (percent-encode anything else, RFC 3986)`;
  return undefined;
}
