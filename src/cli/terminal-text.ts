// Text on its way to a terminal. Whatever the server holds (a partner's client name, a kid, a URI, an
// error description) is printed escaped, so that no stored string can drive the operator's terminal
// (ESC/OSC/CSI sequences, C1 controls, bidi overrides, fake lines). The server refuses such strings
// in new input (src/input/printable-text.ts); this also covers records stored before it did.
import { NOT_PRINTABLE } from '../input/printable-text.js';

const NOT_PRINTABLE_ALL = new RegExp(NOT_PRINTABLE.source, 'gu');

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

/** `\x1b`, `\u202e`, `\u{e0001}`: visible, and what a JavaScript or JSON reader would write. */
function escapeCodePoint(ch: string): string {
  const cp = ch.codePointAt(0)!;
  if (cp <= 0xff) return `\\x${hex(cp, 2)}`;
  if (cp <= 0xffff) return `\\u${hex(cp, 4)}`;
  return `\\u{${hex(cp, 1)}}`;
}

/** One value on one line: every non-printable code point, newlines included, escaped. */
export function escapeValue(text: string): string {
  return text.replace(NOT_PRINTABLE_ALL, escapeCodePoint);
}

/** Text of several lines (the CLI's own layout): as escapeValue, but newlines stay. */
export function escapeText(text: string): string {
  return text.replace(NOT_PRINTABLE_ALL, (ch) => (ch === '\n' ? ch : escapeCodePoint(ch)));
}

/**
 * A JSON document as JSON.stringify wrote it, with the non-printable code points it leaves raw (DEL,
 * C1, bidi and other format characters, U+2028/2029, private use) written as \uXXXX escapes: the same
 * document to a JSON parser, harmless to a terminal. Raw C0 controls only occur outside strings
 * (JSON.stringify escapes them inside), as the layout's newlines, and stay.
 */
export function escapeJson(json: string): string {
  return json.replace(NOT_PRINTABLE_ALL, (ch) => {
    if (ch.charCodeAt(0) < 0x20) return ch;
    let out = '';
    for (let i = 0; i < ch.length; i++) out += `\\u${hex(ch.charCodeAt(i), 4)}`;
    return out;
  });
}
